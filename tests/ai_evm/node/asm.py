"""Tiny hand-assembled contracts for the node tests (no compiler needed).

* :func:`ping_code`: a contract whose every call emits ``Ping(uint256)`` with the calldata as data
  (``PING_ABI`` is its ABI for web3.py and ethers);
* :func:`reader_code`: reads a list of its own storage slots (``SLOAD``) and writes one;
* :func:`caller_code`: calls a list of contracts in turn.

Each ``*_code`` returns creation code that deploys the runtime given.
"""

from __future__ import annotations

from eth_utils import keccak

PING_TOPIC = keccak(text="Ping(uint256)")
PING_ABI = [{"type": "event", "name": "Ping", "anonymous": False,
             "inputs": [{"name": "n", "type": "uint256", "indexed": False}]}]  # fmt: skip


def creation(runtime: bytes) -> bytes:
    """Creation code returning ``runtime`` (CODECOPY it to memory 0, RETURN it)."""
    assert len(runtime) < 256
    init = bytes([0x60, len(runtime), 0x80, 0x60, 11, 0x60, 0, 0x39, 0x60, 0, 0xF3])
    return init + runtime


def ping_code() -> bytes:
    """CALLDATACOPY(0, 0, size); LOG1(0, size, PING_TOPIC); STOP."""
    runtime = bytes([0x36, 0x60, 0, 0x60, 0, 0x37, 0x7F]) + PING_TOPIC + bytes([0x36, 0x60, 0, 0xA1, 0x00])
    return creation(runtime)


def reader_code(read: list[int], write: int) -> bytes:
    """SLOAD each slot of ``read`` (POP), then SSTORE(write, 1); STOP."""
    runtime = b"".join(bytes([0x60, s, 0x54, 0x50]) for s in read)
    return creation(runtime + bytes([0x60, 1, 0x60, write, 0x55, 0x00]))


def caller_code(targets: list[bytes]) -> bytes:
    """CALL each target with no value and no data (POP the result); STOP."""
    runtime = b""
    for t in targets:
        # retSize retOffset argsSize argsOffset value PUSH20 addr GAS CALL POP
        runtime += bytes([0x60, 0, 0x60, 0, 0x60, 0, 0x60, 0, 0x60, 0, 0x73]) + t + bytes([0x5A, 0xF1, 0x50])
    return creation(runtime + b"\x00")
