"""Hex encoding of JSON-RPC values exactly as geth writes them, and strict parsing of params.

Quantities are ``0x`` + lowercase hex without leading zeros (zero is ``0x0``); data is ``0x`` + an
even number of lowercase hex digits; addresses are 20 bytes, hashes 32. Parsers raise
:class:`~ai_evm.node.errors.InvalidParams` naming the parameter.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import InvalidParams

#: Used with ``fullmatch`` only: ``$`` would also match before a trailing newline (``"0x1\n"``).
_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
#: Largest quantity accepted in a param (uint256).
MAX_QUANTITY = (1 << 256) - 1
BLOCK_TAGS = ("latest", "earliest", "pending", "safe", "finalized")


def quantity(value: int) -> str:
    """``0x``-prefixed hex without leading zeros; ``0x0`` for zero."""
    return hex(value)


def data(value: bytes) -> str:
    """``0x``-prefixed lowercase hex of the bytes."""
    return "0x" + bytes(value).hex()


def address_or_none(value: bytes | None) -> str | None:
    """An address as data, or None for empty (contract creation)."""
    return data(value) if value else None


def parse_quantity(value: Any, name: str, maximum: int = MAX_QUANTITY) -> int:
    """A hex quantity string (``0x1a``); JSON integers are accepted too (some clients send them)."""
    if isinstance(value, bool):
        raise InvalidParams(f"invalid {name}: expected a hex quantity, got a boolean")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        if not _HEX.fullmatch(value) or len(value) == 2:
            raise InvalidParams(f"invalid {name}: {_short(value)} is not a 0x-prefixed hex quantity")
        if len(value) > 66:
            raise InvalidParams(f"invalid {name}: hex number larger than 256 bits")
        n = int(value, 16)
    else:
        raise InvalidParams(f"invalid {name}: expected a hex quantity string, got {type(value).__name__}")
    if n < 0 or n > maximum:
        raise InvalidParams(f"invalid {name}: {n} is out of range [0, {maximum}]")
    return n


def parse_data(value: Any, name: str, length: int | None = None, max_bytes: int = 1 << 25) -> bytes:
    """Hex data (``0x`` + an even number of hex digits), optionally of an exact byte length."""
    if not isinstance(value, str):
        raise InvalidParams(f"invalid {name}: expected 0x-prefixed hex data, got {type(value).__name__}")
    if not _HEX.fullmatch(value):
        raise InvalidParams(f"invalid {name}: {_short(value)} is not 0x-prefixed hex data")
    digits = value[2:]
    if len(digits) % 2:
        raise InvalidParams(f"invalid {name}: hex data has an odd number of digits")
    if len(digits) // 2 > max_bytes:
        raise InvalidParams(f"invalid {name}: more than {max_bytes} bytes")
    raw = bytes.fromhex(digits)
    if length is not None and len(raw) != length:
        raise InvalidParams(f"invalid {name}: expected {length} bytes, got {len(raw)}")
    return raw


def parse_address(value: Any, name: str = "address") -> bytes:
    """A 20-byte address (checksum case is not enforced, like geth)."""
    return parse_data(value, name, 20)


def parse_hash(value: Any, name: str = "hash") -> bytes:
    """A 32-byte hash."""
    return parse_data(value, name, 32)


def parse_storage_slot(value: Any, name: str = "slot") -> int:
    """A storage slot: a quantity or 32-byte data, both accepted (like geth)."""
    if isinstance(value, str) and len(value) == 66:
        return int.from_bytes(parse_hash(value, name), "big")
    return parse_quantity(value, name)


def parse_bool(value: Any, name: str) -> bool:
    """A JSON boolean."""
    if not isinstance(value, bool):
        raise InvalidParams(f"invalid {name}: expected a boolean, got {type(value).__name__}")
    return value


def _short(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")
