"""The model bundle: a canonical, versioned, byte-exact encoding of a quantized model.

A bundle holds the graph (nodes over primitive ops, see ``opml.ops``), every tensor's spec and the
data of the constant tensors (int8 weights, int32 biases, requantization multipliers, lookup
tables). The same model always encodes to the same bytes; :func:`decode_bundle` accepts only
canonical encodings, so ``encode_bundle(decode_bundle(b)) == b`` for every accepted ``b``.
Descriptors are sequences of 32-byte big-endian words so that a Solidity contract can read them
with ``calldataload``. The exact layout is in ``docs/bundle.md``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BundleError
from .ops import BY_CODE, BY_NAME, OpSchema

if TYPE_CHECKING:
    import numpy as np

# numpy is imported where it is used, not at module level: the dtype codes, nodes and word
# helpers here are also the fraud VM verifier's, whose import path must stay numpy-free.

MAGIC = b"AIEVMBDL"
VERSION = 1
WORD = 32

# Decoder limits: a bundle outside them is rejected before any large allocation.
MAX_TENSORS = 1 << 20
MAX_NODES = 1 << 20
MAX_NDIM = 8
MAX_DESC_WORDS = 4096
MAX_DIM = 1 << 31


class DType(IntEnum):
    """Element types of bundle tensors (codes are committed: never renumber)."""

    INT8 = 1
    UINT8 = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    FLOAT32 = 6
    BOOL = 7

    @property
    def np(self) -> np.dtype:
        import numpy as np

        return np.dtype(_NP[self])

    @property
    def itemsize(self) -> int:
        """Bytes per element (numpy-free ``self.np.itemsize``)."""
        return _ITEMSIZE[self]

    @classmethod
    def from_np(cls, dt: np.dtype | type) -> DType:  # type: ignore[name-defined]
        import numpy as np

        name = np.dtype(dt).name
        for k, v in _NP.items():
            if v == name:
                return k
        raise BundleError(f"dtype {name} has no bundle encoding")


_NP = {
    DType.INT8: "int8",
    DType.UINT8: "uint8",
    DType.INT16: "int16",
    DType.INT32: "int32",
    DType.INT64: "int64",
    DType.FLOAT32: "float32",
    DType.BOOL: "bool",
}
_ITEMSIZE = {DType.INT8: 1, DType.UINT8: 1, DType.INT16: 2, DType.INT32: 4, DType.INT64: 8, DType.FLOAT32: 4,
             DType.BOOL: 1}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the graph.

    ``shape`` entries are static sizes, except that the first may be ``-k``: ``k`` times the batch
    size given at run time (``-1`` is the plain dynamic batch dimension). ``scale``/``zero_point``
    are the quantization parameters of int8/uint8 activations (real = (q - zero_point) * scale);
    they are 0 for other tensors. ``data`` is set for constants (little-endian, C order).
    """

    name: str
    dtype: DType
    shape: tuple[int, ...]
    scale: float = 0.0
    zero_point: int = 0
    data: bytes | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @cached_property
    def scale_bits(self) -> int:
        import numpy as np

        return int(np.array(self.scale, dtype=np.float32).view(np.uint32))

    def array(self) -> np.ndarray:
        """The constant's value as a read-only numpy array."""
        if self.data is None:
            raise BundleError(f"tensor {self.name!r} is not a constant")
        import numpy as np

        a = np.frombuffer(self.data, dtype=self.dtype.np).reshape(self.shape)
        return a

    def concrete_shape(self, batch: int) -> tuple[int, ...]:
        """The shape for a given batch size."""
        if self.shape and self.shape[0] < 0:
            return (-self.shape[0] * batch,) + self.shape[1:]
        return self.shape


@dataclass(frozen=True)
class Node:
    """One op application: input/output tensor indices and integer attributes (schema order)."""

    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    attrs: tuple[tuple[int, ...], ...] = ()
    name: str = ""

    @property
    def schema(self) -> OpSchema:
        return BY_NAME[self.op]

    def attr(self, name: str) -> tuple[int, ...]:
        return self.attrs[self.schema.attrs.index(name)]

    def iattr(self, name: str) -> int:
        return self.attr(name)[0]


@dataclass(frozen=True)
class Bundle:
    """A decoded bundle. Build with :func:`make_bundle`, serialize with :func:`encode_bundle`."""

    tensors: tuple[TensorSpec, ...]
    nodes: tuple[Node, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    metadata: dict[str, str] = field(default_factory=dict)

    @cached_property
    def encoded(self) -> bytes:
        return encode_bundle(self)

    @cached_property
    def address(self) -> bytes:
        from .commitment import compute_address

        return compute_address(self)

    @property
    def address_hex(self) -> str:
        return "0x" + self.address.hex()

    def input_specs(self) -> list[TensorSpec]:
        return [self.tensors[i] for i in self.inputs]

    def output_specs(self) -> list[TensorSpec]:
        return [self.tensors[i] for i in self.outputs]


# ---------------------------------------------------------------------------------------------
# word helpers


def _word(v: int) -> bytes:
    if not -(1 << 255) <= v < (1 << 255):
        raise BundleError(f"value {v} does not fit a signed 256-bit word")
    return (v % (1 << 256)).to_bytes(WORD, "big")


def _unword(b: bytes) -> int:
    v = int.from_bytes(b, "big")
    return v - (1 << 256) if v >> 255 else v


def tensor_descriptor_words(t: TensorSpec) -> list[int]:
    """The descriptor of a tensor as integers (each becomes one 32-byte word)."""
    nbytes = len(t.data) if t.data is not None else 0
    return [int(t.dtype), len(t.shape), *t.shape, int(t.is_const), t.scale_bits, t.zero_point, nbytes]


def node_descriptor_words(n: Node) -> list[int]:
    """The descriptor of a node as integers: op code, inputs, outputs, attribute lists."""
    words = [BY_NAME[n.op].code, len(n.inputs), *n.inputs, len(n.outputs), *n.outputs, len(n.attrs)]
    for a in n.attrs:
        words += [len(a), *a]
    return words


def words_bytes(words: list[int]) -> bytes:
    return b"".join(_word(w) for w in words)


def _meta_words(b: Bundle) -> list[int]:
    return [VERSION, len(b.tensors), len(b.nodes), len(b.inputs), *b.inputs, len(b.outputs), *b.outputs]


def _names_blob(b: Bundle) -> bytes:
    parts = []
    for name in [t.name for t in b.tensors] + [n.name for n in b.nodes]:
        raw = name.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise BundleError(f"name too long: {name[:40]}...")
        parts.append(struct.pack("<H", len(raw)) + raw)
    return b"".join(parts)


def _metadata_blob(meta: dict[str, str]) -> bytes:
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise BundleError("bundle metadata must map strings to strings")
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def meta_bytes(b: Bundle) -> bytes:
    """The committed meta section: meta words, then the names and metadata blobs."""
    return words_bytes(_meta_words(b)) + _names_blob(b) + _metadata_blob(b.metadata)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % WORD)


def encode_bundle(b: Bundle) -> bytes:
    """Serialize a bundle canonically (see ``docs/bundle.md``); BundleError if it is not valid."""
    validate_bundle(b)
    return _encode_valid(b)


def _encode_valid(b: Bundle) -> bytes:
    out = [MAGIC, struct.pack("<I", VERSION)]
    meta = words_bytes(_meta_words(b))
    names = _names_blob(b)
    metadata = _metadata_blob(b.metadata)
    for blob in (meta, names, metadata):
        out.append(struct.pack("<Q", len(blob)))
        out.append(blob)
    for t in b.tensors:
        d = words_bytes(tensor_descriptor_words(t))
        out.append(struct.pack("<I", len(d) // WORD) + d)
    for n in b.nodes:
        d = words_bytes(node_descriptor_words(n))
        out.append(struct.pack("<I", len(d) // WORD) + d)
    for t in b.tensors:
        if t.data is not None:
            out.append(_pad(t.data))
    return b"".join(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BundleError(
                f"bundle truncated: needed {n} bytes for {what} at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left"
            )
        chunk = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return chunk

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.take(8, what))[0])

    def words(self, what: str) -> list[int]:
        n = self.u32(what)
        if n > MAX_DESC_WORDS:
            raise BundleError(f"{what}: {n} words exceeds the limit of {MAX_DESC_WORDS}")
        raw = self.take(n * WORD, what)
        return [_unword(raw[i : i + WORD]) for i in range(0, len(raw), WORD)]


class _WordCursor:
    def __init__(self, words: list[int], what: str) -> None:
        self.words, self.i, self.what = words, 0, what

    def next(self) -> int:
        if self.i >= len(self.words):
            raise BundleError(f"{self.what}: descriptor too short")
        self.i += 1
        return self.words[self.i - 1]

    def list(self, limit: int) -> tuple[int, ...]:
        n = self.next()
        if not 0 <= n <= limit:
            raise BundleError(f"{self.what}: list length {n} out of range")
        return tuple(self.next() for _ in range(n))

    def done(self) -> None:
        if self.i != len(self.words):
            raise BundleError(f"{self.what}: {len(self.words) - self.i} trailing descriptor words")


def decode_bundle(data: bytes) -> Bundle:
    """Parse and validate bundle bytes. Raises :class:`BundleError` for anything non-canonical."""
    import numpy as np

    if not isinstance(data, bytes | bytearray | memoryview):
        raise BundleError("bundle must be bytes")
    data = bytes(data)
    r = _Reader(data)
    if r.take(len(MAGIC), "magic") != MAGIC:
        raise BundleError("not an AI EVM bundle (bad magic)")
    version = r.u32("version")
    if version != VERSION:
        raise BundleError(f"unsupported bundle version {version} (this node reads version {VERSION})")
    meta_len = r.u64("meta length")
    if meta_len % WORD or meta_len > MAX_DESC_WORDS * WORD * 64:
        raise BundleError("bad meta section length")
    raw_meta = r.take(meta_len, "meta section")
    meta = _WordCursor([_unword(raw_meta[i : i + WORD]) for i in range(0, meta_len, WORD)], "meta")
    if meta.next() != VERSION:
        raise BundleError("meta version does not match header version")
    n_tensors, n_nodes = meta.next(), meta.next()
    if not (0 < n_tensors <= MAX_TENSORS and 0 <= n_nodes <= MAX_NODES):
        raise BundleError(f"bad tensor/node counts {n_tensors}/{n_nodes}")
    inputs, outputs = meta.list(n_tensors), meta.list(n_tensors)
    meta.done()
    names_raw = r.take(r.u64("names length"), "names")
    metadata_raw = r.take(r.u64("metadata length"), "metadata")
    names = _parse_names(names_raw, n_tensors + n_nodes)
    try:
        metadata = json.loads(metadata_raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"bundle metadata is not valid JSON: {e}") from None
    if not isinstance(metadata, dict):
        raise BundleError("bundle metadata must be a JSON object")
    descs = []
    for i in range(n_tensors):
        c = _WordCursor(r.words(f"tensor {i}"), f"tensor {i}")
        dtype_code, shape = c.next(), c.list(MAX_NDIM)
        is_const, scale_bits, zp, nbytes = c.next(), c.next(), c.next(), c.next()
        c.done()
        descs.append((dtype_code, shape, is_const, scale_bits, zp, nbytes))
    nodes = []
    for j in range(n_nodes):
        c = _WordCursor(r.words(f"node {j}"), f"node {j}")
        code = c.next()
        if code not in BY_CODE:
            raise BundleError(f"node {j}: unknown op code {code}")
        ins, outs = c.list(64), c.list(8)
        attrs = tuple(c.list(64) for _ in range(c.next()))
        c.done()
        nodes.append(Node(BY_CODE[code].name, ins, outs, attrs, names[n_tensors + j]))
    tensors = []
    for i, (dtype_code, shape, is_const, scale_bits, zp, nbytes) in enumerate(descs):
        try:
            dtype = DType(dtype_code)
        except ValueError:
            raise BundleError(f"tensor {i}: unknown dtype code {dtype_code}") from None
        if is_const not in (0, 1) or not 0 <= scale_bits < (1 << 32):
            raise BundleError(f"tensor {i}: bad descriptor fields")
        scale = float(np.array(scale_bits, dtype=np.uint32).view(np.float32))
        blob = None
        if is_const:
            blob = r.take(nbytes, f"data of tensor {i}")
            if any(r.take(-nbytes % WORD, f"padding of tensor {i}")):
                raise BundleError(f"tensor {i}: non-zero padding")
        elif nbytes:
            raise BundleError(f"tensor {i}: activation with data length")
        tensors.append(TensorSpec(names[i], dtype, shape, scale, zp, blob))
    if r.pos != len(data):
        raise BundleError(f"{len(data) - r.pos} trailing bytes after the bundle")
    b = Bundle(tuple(tensors), tuple(nodes), inputs, outputs, metadata)
    validate_bundle(b)
    if _encode_valid(b) != data:
        raise BundleError("bundle is not in canonical form")
    return b


def _parse_names(raw: bytes, count: int) -> list[str]:
    out, pos = [], 0
    for _ in range(count):
        if pos + 2 > len(raw):
            raise BundleError("names section truncated")
        (n,) = struct.unpack_from("<H", raw, pos)
        try:
            out.append(raw[pos + 2 : pos + 2 + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise BundleError("names section is not UTF-8") from None
        pos += 2 + n
    if pos != len(raw):
        raise BundleError("names section has trailing bytes")
    return out


def validate_bundle(b: Bundle) -> None:
    """Structural checks (shapes, constant sizes, op arity, single assignment, topological order), then
    every node's declared output shape against the one its inputs produce (:mod:`opml.shapes`)."""
    import numpy as np

    nt = len(b.tensors)
    for i, t in enumerate(b.tensors):
        if len(t.shape) > MAX_NDIM:
            raise BundleError(f"tensor {i} ({t.name}): rank {len(t.shape)} exceeds {MAX_NDIM}")
        for ax, d in enumerate(t.shape):
            if not (0 <= d < MAX_DIM or (ax == 0 and -MAX_DIM < d < 0 and not t.is_const)):
                raise BundleError(f"tensor {i} ({t.name}): bad dimension {d} at axis {ax}")
        if t.data is not None:
            expect = int(np.prod(t.shape, dtype=np.int64)) * t.dtype.np.itemsize
            if len(t.data) != expect:
                raise BundleError(f"tensor {i} ({t.name}): {len(t.data)} data bytes, shape needs {expect}")
        if not -(1 << 31) <= t.zero_point < (1 << 31):
            raise BundleError(f"tensor {i} ({t.name}): zero point out of range")
    defined = [False] * nt
    for i, t in enumerate(b.tensors):
        defined[i] = t.is_const
    for i in b.inputs:
        if not 0 <= i < nt or b.tensors[i].is_const:
            raise BundleError(f"graph input {i} is not an activation tensor")
        defined[i] = True
    for j, n in enumerate(b.nodes):
        s = BY_NAME.get(n.op)
        if s is None:
            raise BundleError(f"node {j}: unknown op {n.op!r}")
        if not s.min_inputs <= len(n.inputs) <= s.max_inputs or len(n.outputs) != 1:
            raise BundleError(f"node {j} ({n.op}): wrong number of inputs/outputs")
        if len(n.attrs) != len(s.attrs):
            raise BundleError(f"node {j} ({n.op}): expected attributes {s.attrs}")
        for i in n.inputs:
            if not 0 <= i < nt or not defined[i]:
                raise BundleError(f"node {j} ({n.op}): input {i} used before it is defined")
        for o in n.outputs:
            if not 0 <= o < nt or defined[o]:
                raise BundleError(f"node {j} ({n.op}): output {o} assigned twice or is a constant")
            defined[o] = True
    for o in b.outputs:
        if not 0 <= o < nt or not defined[o]:
            raise BundleError(f"graph output {o} is never computed")
    from .shapes import check_bundle_shapes  # (imports this module)

    check_bundle_shapes(b)


def load_bundle(src: bytes | bytearray | str | Path | Bundle) -> Bundle:
    """Load a bundle from bytes, a file path, or return an already decoded bundle."""
    if isinstance(src, Bundle):
        return src
    if isinstance(src, str | Path):
        try:
            data = Path(src).read_bytes()
        except OSError as e:
            raise BundleError(f"cannot read bundle {src}: {e.strerror}") from None
        return decode_bundle(data)
    return decode_bundle(bytes(src))
