"""Methods that sign with the node's dev accounts: ``eth_sendTransaction``, ``eth_sign``,
``personal_sign``, ``eth_signTypedData_v4``.

A mixin of :class:`ai_evm.node.methods.EthApi` (it uses ``self.seq``, ``self.keys`` - dev account
address -> private key - and the API's ``eth_estimateGas``/``eth_sendRawTransaction``). Only the
public dev accounts can sign: this is a development node.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct

from .encoding import data, parse_address, parse_data, parse_quantity
from .errors import InvalidParams, ServerError
from .execution import parse_call_request

#: Suggested priority fee (1 gwei, like geth's dev mode and anvil).
PRIORITY_FEE = 1_000_000_000


class SigningApi:
    """Dev-account signing."""

    seq: Any
    keys: dict[bytes, bytes]

    def eth_estimateGas(self, tx: Any, block: Any = "latest", overrides: Any = None) -> str:
        raise NotImplementedError

    def eth_sendRawTransaction(self, raw: Any) -> str:
        raise NotImplementedError

    def _key(self, address: Any, name: str = "address") -> bytes:
        sender = parse_address(address, name)
        key = self.keys.get(sender)
        if key is None:
            raise ServerError(f"unknown account 0x{sender.hex()} (only the node's dev accounts can sign)")
        return key

    def eth_sendTransaction(self, obj: Any) -> str:
        """Fill in, sign with a dev account and send a transaction."""
        if not isinstance(obj, dict):
            raise InvalidParams("invalid transaction: expected an object")
        key = self._key(obj.get("from"), "from")
        sender = parse_address(obj.get("from"), "from")
        req = parse_call_request(obj)
        # the estimate runs on a snapshot, outside the chain lock (it may take up to the RPC time limit)
        gas = req.gas if req.gas is not None else int(self.eth_estimateGas({**obj, "gas": None}, "latest"), 16)
        with self.seq.lock:
            limits = self.seq.limits()
            nonce = (parse_quantity(obj["nonce"], "nonce", (1 << 64) - 1) if obj.get("nonce") is not None
                     else self.seq.pool.pending_nonce(sender, self.seq.head_state().get_nonce(sender)))
        fields: dict[str, Any] = {
            "nonce": nonce, "gas": gas, "value": req.value, "data": req.data, "chainId": limits.chain_id,
        }  # fmt: skip
        if req.to:
            fields["to"] = req.to
        if req.access_list is not None:  # a type-1 (gasPrice) or type-2 transaction with the list
            fields["accessList"] = [
                {"address": "0x" + a.hex(), "storageKeys": [f"0x{k:064x}" for k in keys]} for a, keys in req.access_list
            ]
        if obj.get("gasPrice") is not None:
            fields["gasPrice"] = req.gas_price
        else:
            tip = parse_quantity(obj["maxPriorityFeePerGas"], "maxPriorityFeePerGas") \
                if obj.get("maxPriorityFeePerGas") is not None else PRIORITY_FEE
            fields["maxPriorityFeePerGas"] = tip
            fields["maxFeePerGas"] = req.gas_price if obj.get("maxFeePerGas") is not None else 2 * limits.base_fee + tip
            fields["type"] = 2
        signed = Account.sign_transaction(fields, key)
        return self.eth_sendRawTransaction(data(signed.raw_transaction))

    def eth_sign(self, address: Any, message: Any) -> str:
        """EIP-191 signature of data by a dev account."""
        key = self._key(address)
        return data(Account.sign_message(encode_defunct(parse_data(message, "message")), key).signature)

    def personal_sign(self, message: Any, address: Any, *_: Any) -> str:
        """``eth_sign`` with the parameters the other way round."""
        return self.eth_sign(address, message)

    def eth_signTypedData_v4(self, address: Any, typed: Any) -> str:
        """EIP-712 signature of typed data by a dev account."""
        key = self._key(address)
        if isinstance(typed, str):
            import json

            try:
                typed = json.loads(typed)
            except ValueError:
                raise InvalidParams("invalid typed data: not JSON") from None
        if not isinstance(typed, dict):
            raise InvalidParams("invalid typed data: expected an EIP-712 object")
        try:
            return data(Account.sign_typed_data(key, full_message=typed).signature)
        except Exception as e:
            raise InvalidParams(f"invalid typed data: {e}") from None
