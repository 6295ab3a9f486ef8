"""Call layouts of the inference precompiles, and the work they share.

``0xa1`` (by model address), compatible with the public Axonum ``AILib.sol``::

    input  = bytes32 modelAddress ‖ uint256 outputSize ‖ inputBytes
    return = uint256 outputLength ‖ outputBytes

``0xa0`` (bundle inline), also Axonum's layout::

    input  = uint256 bundleLength ‖ uint256 inputLength ‖ bundle ‖ inputBytes
    return = uint256 outputLength ‖ outputBytes

``inputBytes``/``outputBytes`` are the model's declared tensors, little-endian, C order, in
declared dtype, concatenated in declared order (docs/precompile.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opml.bundle import Bundle
from opml.engine import batch_from_input_length, output_length, run_bytes
from opml.errors import OpmlError
from opml.merkle import keccak

from .errors import InferenceFailed, MalformedCall, OutputSizeMismatch

WORD = 32
#: Largest value accepted in a length/size word; anything above cannot fit in a call anyway.
MAX_SIZE_WORD = 1 << 40


@dataclass(frozen=True)
class InferenceRecord:
    """One executed inference: what a validator re-executes and the inference root commits to."""

    model: bytes
    input_hash: bytes
    output_hash: bytes
    gas: int
    tx_hash: bytes = b""
    call_index: int = 0
    #: The call's input and output bytes (not committed: their hashes are). A node keeps them so
    #: that a validator can challenge the record and a proposer defend it (docs/rollup.md).
    input: bytes = field(default=b"", compare=False, repr=False)
    output: bytes = field(default=b"", compare=False, repr=False)

    def encode(self) -> bytes:
        """Canonical bytes: model ‖ inputHash ‖ outputHash ‖ txHash ‖ uint256 callIndex ‖ uint256 gas."""
        return (
            self.model + self.input_hash + self.output_hash + self.tx_hash.rjust(WORD, b"\0")
            + self.call_index.to_bytes(WORD, "big") + self.gas.to_bytes(WORD, "big")
        )

    def to_json(self) -> dict[str, object]:
        """JSON form used by ``aievm_getInferences``."""
        return {
            "model": "0x" + self.model.hex(),
            "inputHash": "0x" + self.input_hash.hex(),
            "outputHash": "0x" + self.output_hash.hex(),
            "txHash": "0x" + self.tx_hash.hex(),
            "callIndex": self.call_index,
            "gas": self.gas,
            "input": "0x" + self.input.hex(),
            "output": "0x" + self.output.hex(),
        }


def encode_call(model: bytes, output_size: int, input_bytes: bytes) -> bytes:
    """0xa1 call data: ``modelAddress ‖ uint256 outputSize ‖ inputBytes``."""
    return bytes(model) + output_size.to_bytes(WORD, "big") + bytes(input_bytes)


def encode_inline_call(bundle: bytes, input_bytes: bytes) -> bytes:
    """0xa0 call data: ``uint256 bundleLength ‖ uint256 inputLength ‖ bundle ‖ inputBytes``."""
    header = len(bundle).to_bytes(WORD, "big") + len(input_bytes).to_bytes(WORD, "big")
    return header + bytes(bundle) + bytes(input_bytes)


def decode_return(data: bytes) -> bytes:
    """The output bytes of a precompile's return data ``uint256 length ‖ outputBytes``."""
    if len(data) < WORD or int.from_bytes(data[:WORD], "big") != len(data) - WORD:
        raise ValueError(f"{len(data)} bytes of return data are not uint256 length ‖ output")
    return bytes(data[WORD:])


def size_word(data: bytes, offset: int, what: str) -> int:
    """The big-endian uint256 at ``offset``, bounded by :data:`MAX_SIZE_WORD`."""
    value = int.from_bytes(data[offset:offset + WORD], "big")
    if value > MAX_SIZE_WORD:
        raise MalformedCall(f"{what} word {value} is implausibly large")
    return value


def parse_by_address(data: bytes) -> tuple[bytes, int, bytes]:
    """``(model address, outputSize, inputBytes)`` of a 0xa1 call."""
    if len(data) < 2 * WORD:
        raise MalformedCall(
            f"call data is {len(data)} bytes; expected modelAddress (32) ‖ outputSize (32) ‖ input"
        )
    return data[:WORD], size_word(data, WORD, "outputSize"), data[2 * WORD:]


def parse_inline(data: bytes) -> tuple[bytes, bytes]:
    """``(bundle bytes, inputBytes)`` of a 0xa0 call."""
    if len(data) < 2 * WORD:
        raise MalformedCall(
            f"call data is {len(data)} bytes; expected bundleLength (32) ‖ inputLength (32) ‖ bundle ‖ input"
        )
    n_bundle = size_word(data, 0, "bundleLength")
    n_input = size_word(data, WORD, "inputLength")
    if len(data) != 2 * WORD + n_bundle + n_input:
        raise MalformedCall(
            f"call data is {len(data)} bytes but its header announces 64 + {n_bundle} + {n_input}"
        )
    return data[2 * WORD:2 * WORD + n_bundle], data[2 * WORD + n_bundle:]


def batch_and_output_length(bundle: Bundle, input_bytes: bytes) -> tuple[int, int]:
    """``(batch size, output bytes)`` for this input; :class:`InferenceFailed` if its length is wrong."""
    try:
        return batch_from_input_length(bundle, len(input_bytes)), output_length(bundle, len(input_bytes))
    except OpmlError as e:
        raise InferenceFailed(f"model 0x{bundle.address.hex()}: wrong input length: {e}") from None


def check_output_size(bundle: Bundle, requested: int, actual: int) -> None:
    """The caller's ``outputSize`` must equal the model's output length for its input."""
    if requested != actual:
        raise OutputSizeMismatch(
            f"model 0x{bundle.address.hex()}: outputSize is {requested} "
            f"but the model returns {actual} bytes for this input"
        )


def execute(bundle: Bundle, input_bytes: bytes, gas: int) -> tuple[bytes, InferenceRecord]:
    """Run the engine; returns the precompile's return data and the inference record.

    Any engine failure (including an unexpected internal error) becomes :class:`InferenceFailed`,
    so nothing raises out of the VM.
    """
    try:
        output = run_bytes(bundle, input_bytes)
    except OpmlError as e:
        raise InferenceFailed(f"model 0x{bundle.address.hex()}: inference failed: {e}") from None
    except (MemoryError, RecursionError) as e:
        raise InferenceFailed(f"model 0x{bundle.address.hex()}: node out of resources: {type(e).__name__}") from None
    except Exception as e:  # a bug in the engine must not crash the node; make it a failed call
        name = type(e).__name__
        raise InferenceFailed(f"model 0x{bundle.address.hex()}: internal engine error: {name}: {e}") from None
    record = InferenceRecord(bundle.address, keccak(input_bytes), keccak(output), gas,
                             input=bytes(input_bytes), output=output)
    return len(output).to_bytes(WORD, "big") + output, record
