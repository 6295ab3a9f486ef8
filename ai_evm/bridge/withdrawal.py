"""A withdrawal from L2 to L1, as ``L2ToL1MessagePasser.initiateWithdrawal`` records it.

Its hash is ``keccak256(abi.encode(nonce, sender, target, value, gasLimit, data))``; the message
passer sets ``sentMessages[hash] = true`` (a mapping at storage slot 0), so the L1 ``Portal`` proves
the withdrawal with the storage slot ``keccak256(abi.encode(hash, 0))`` holding 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_canonical_address, to_checksum_address

#: The L2 predeploy that records withdrawals (OP's address).
MESSAGE_PASSER = to_checksum_address("0x4200000000000000000000000000000000000016")
#: Storage slot of ``sentMessages`` in the message passer.
SENT_MESSAGES_SLOT = 0
#: ``keccak256("MessagePassed(uint256,address,address,uint256,uint256,bytes,bytes32)")``.
MESSAGE_PASSED_TOPIC = keccak(text="MessagePassed(uint256,address,address,uint256,uint256,bytes,bytes32)")

UINT256_MAX = 2**256 - 1


class WithdrawalError(ValueError):
    """A withdrawal's fields or its ``MessagePassed`` log are malformed (the message says which)."""


@dataclass(frozen=True)
class Withdrawal:
    """The fields of one withdrawal (the Portal's ``Withdrawal`` struct, in order)."""

    nonce: int
    sender: str
    target: str
    value: int
    gas_limit: int
    data: bytes

    def __post_init__(self) -> None:
        for name in ("nonce", "value", "gas_limit"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= UINT256_MAX:
                raise WithdrawalError(f"withdrawal {name} must be a uint256, got {v!r}")
        for name in ("sender", "target"):
            try:
                object.__setattr__(self, name, to_checksum_address(getattr(self, name)))
            except (ValueError, TypeError):
                raise WithdrawalError(f"withdrawal {name} is not an address: {getattr(self, name)!r}") from None

    def as_tuple(self) -> tuple[int, str, str, int, int, bytes]:
        """The ABI tuple of the Portal's ``Withdrawal`` struct."""
        return (self.nonce, self.sender, self.target, self.value, self.gas_limit, self.data)

    def to_json(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "sender": self.sender, "target": self.target, "value": self.value,
                "gasLimit": self.gas_limit, "data": "0x" + self.data.hex()}

    @classmethod
    def from_json(cls, raw: Any) -> Withdrawal:
        """The withdrawal of :meth:`to_json`'s form."""
        if not isinstance(raw, dict):
            raise WithdrawalError("a withdrawal must be a JSON object")
        try:
            data = raw["data"]
            if not isinstance(data, str) or not data.startswith("0x"):
                raise WithdrawalError("withdrawal data must be a 0x-prefixed hex string")
            return cls(int(raw["nonce"]), raw["sender"], raw["target"], int(raw["value"]), int(raw["gasLimit"]),
                       bytes.fromhex(data[2:]))
        except KeyError as e:
            raise WithdrawalError(f"withdrawal lacks field {e.args[0]!r}") from None
        except ValueError as e:
            if isinstance(e, WithdrawalError):
                raise
            raise WithdrawalError(f"malformed withdrawal: {e}") from None


def withdrawal_hash(w: Withdrawal) -> bytes:
    """``keccak256(abi.encode(nonce, sender, target, value, gasLimit, data))``."""
    return keccak(encode(["uint256", "address", "address", "uint256", "uint256", "bytes"],
                         [w.nonce, w.sender, w.target, w.value, w.gas_limit, w.data]))


def storage_slot(whash: bytes) -> bytes:
    """The message passer's slot of ``sentMessages[whash]``: ``keccak256(abi.encode(whash, 0))``."""
    if len(whash) != 32:
        raise WithdrawalError(f"a withdrawal hash has 32 bytes, got {len(whash)}")
    return keccak(whash + SENT_MESSAGES_SLOT.to_bytes(32, "big"))


def from_message_passed(log: dict[str, Any]) -> Withdrawal:
    """The withdrawal of a ``MessagePassed`` log (an ``eth_getLogs``/receipt entry as JSON-RPC or web3
    gives it); checks the log's own ``withdrawalHash`` against the fields."""
    from eth_abi import decode

    def raw(v: Any) -> bytes:
        return bytes.fromhex(v[2:]) if isinstance(v, str) else bytes(v)

    topics = [raw(t) for t in log.get("topics", [])]
    if len(topics) != 4 or topics[0] != MESSAGE_PASSED_TOPIC:
        raise WithdrawalError("not a MessagePassed log")
    if to_canonical_address(log["address"]) != to_canonical_address(MESSAGE_PASSER):
        raise WithdrawalError(f"MessagePassed log from {log['address']}, not the message passer")
    value, gas_limit, data, whash = decode(["uint256", "uint256", "bytes", "bytes32"], raw(log["data"]))
    w = Withdrawal(int.from_bytes(topics[1], "big"), to_checksum_address(topics[2][12:]),
                   to_checksum_address(topics[3][12:]), value, gas_limit, data)
    if withdrawal_hash(w) != whash:
        raise WithdrawalError("MessagePassed log's withdrawalHash does not match its fields")
    return w


__all__ = ["MESSAGE_PASSED_TOPIC", "MESSAGE_PASSER", "SENT_MESSAGES_SLOT", "Withdrawal", "WithdrawalError",
           "from_message_passed", "storage_slot", "withdrawal_hash"]
