"""The batch format (ai_evm.rollup.codec): round trips, bounds, and every malformed input named."""

from __future__ import annotations

import zlib

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_evm.rollup import codec
from ai_evm.rollup.codec import Batch, CodecError, Frame

H = bytes(range(32))


def batches(n: int = 3) -> list[Batch]:
    return [Batch(bytes([i]) * 32, 7 + i // 2, bytes([100 + i]) * 32, 1000 + i,
                  tuple(bytes([2, i, j]) for j in range(i))) for i in range(n)]


def test_channel_round_trip_through_frames() -> None:
    bs = batches(5)
    data = codec.encode_channel(bs)
    frames = codec.split_frames(b"c" * 16, data, 7)
    assert [f.number for f in frames] == list(range(len(frames))) and frames[-1].is_last
    assert not any(f.is_last for f in frames[:-1])
    wire = codec.encode_batcher_data(frames)
    assert wire[0] == codec.VERSION
    assert codec.decode_batcher_data(wire) == frames
    assert codec.decode_channel(b"".join(f.data for f in frames)) == bs


@pytest.mark.parametrize("data, why", [
    (b"", "empty"),
    (b"\x01" + Frame(b"c" * 16, 0, b"x", True).encode(), "version"),
    (b"\x00" + Frame(b"c" * 16, 0, b"xy", True).encode()[:-2], "runs past"),
    (b"\x00" + b"c" * 16 + b"\x00\x00", "truncated frame header"),
    (b"\x00" + Frame(b"c" * 16, 0, b"x", True).encode()[:-1] + b"\x02", "is_last"),
    (b"\x00" + b"c" * 16 + b"\x00\x00" + (codec.MAX_FRAME_DATA + 1).to_bytes(4, "big") + b"\x00", "too large"),
])
def test_malformed_batcher_data_is_named(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        codec.decode_batcher_data(data)


def _raw_channel(item: object) -> bytes:
    return zlib.compress(rlp.encode(item))


@pytest.mark.parametrize("data, why", [
    (b"not zlib", "not valid zlib"),
    (zlib.compress(b"\x01" * 10)[:-3], "truncated"),
    (zlib.compress(rlp.encode([])) + b"x", "extra bytes"),
    (_raw_channel([]), "list of 1.."),
    (zlib.compress(b"\xc1"), "not one RLP list"),
    (_raw_channel([[H, b"\x01", H, b"\x05"]]), "list of 5"),
    (_raw_channel([[H[:31], b"\x01", H, b"\x05", []]]), "parent_hash"),
    (_raw_channel([[H, b"\x01", H[:1], b"\x05", []]]), "epoch_hash"),
    (_raw_channel([[H, b"\x00\x01", H, b"\x05", []]]), "canonical integer"),
    (_raw_channel([[H, b"\x01" * 9, H, b"\x05", []]]), "canonical integer"),
    (_raw_channel([[H, b"\x01", H, b"\x05", [b""]]]), "non-empty"),
    (_raw_channel([[H, b"\x01", H, b"\x05", [[b"x"]]]]), "non-empty"),
])
def test_malformed_channel_is_named(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        codec.decode_channel(data)


def test_zip_bomb_stops_at_the_decompression_bound() -> None:
    bomb = zlib.compress(b"\x00" * (codec.MAX_DECOMPRESSED_BYTES + 1), 9)
    assert len(bomb) < 20_000
    with pytest.raises(CodecError, match="decompresses to more than"):
        codec.decode_channel(bomb)


def test_split_frames_bounds() -> None:
    with pytest.raises(CodecError):
        codec.split_frames(b"short", b"x", 10)
    with pytest.raises(CodecError, match="frames"):
        codec.split_frames(b"c" * 16, b"x" * (codec.MAX_FRAMES_PER_CHANNEL + 1), 1)
    assert codec.split_frames(b"c" * 16, b"", 10) == [Frame(b"c" * 16, 0, b"", True)]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_codec_error(data: bytes) -> None:
    for fn in (codec.decode_batcher_data, codec.decode_channel):
        try:
            fn(data)
        except CodecError:
            pass


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**64 - 1),
                          st.integers(0, 2**64 - 1), st.lists(st.binary(min_size=1, max_size=40), max_size=4)),
                min_size=1, max_size=5), st.integers(1, 50))
def test_round_trip_any_batches(items: list, size: int) -> None:
    bs = [Batch(h, n, h, t, tuple(txs)) for h, n, t, txs in items]
    frames = codec.split_frames(b"z" * 16, codec.encode_channel(bs), size)
    got = codec.decode_batcher_data(codec.encode_batcher_data(frames))
    assert codec.decode_channel(b"".join(f.data for f in got)) == bs
