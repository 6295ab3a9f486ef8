"""Prefunded development accounts derived from a public test mnemonic (anvil's defaults).

**Never use these keys for anything of value**: the mnemonic is public. The accounts are the
BIP-44 paths ``m/44'/60'/0'/0/i`` of :data:`DEV_MNEMONIC`, so account 0 is
``0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266`` exactly as in anvil and hardhat.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from eth_account import Account

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNT_COUNT = 10
#: 10 000 ether each.
DEV_BALANCE = 10_000 * 10**18


@dataclass(frozen=True)
class DevAccount:
    """One development account: checksummed address, raw address and private key."""

    address: str
    address_bytes: bytes
    private_key: bytes


@lru_cache(maxsize=4)
def dev_accounts(mnemonic: str = DEV_MNEMONIC, count: int = DEV_ACCOUNT_COUNT) -> tuple[DevAccount, ...]:
    """The first ``count`` accounts of ``mnemonic``."""
    Account.enable_unaudited_hdwallet_features()
    out = []
    for i in range(count):
        acct = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}")
        out.append(DevAccount(acct.address, bytes.fromhex(acct.address[2:]), bytes(acct.key)))
    return tuple(out)
