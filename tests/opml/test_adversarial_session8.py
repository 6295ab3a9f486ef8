"""Adversarial review of session 8's engine paths: mutated bundles, the fast input path, out-of-range parameters.

* committed and ``opml.adversarial`` bundles with random byte flips (mostly in the descriptors) and structural
  mutations (an attribute word, a declared dimension, a node input) that still decode: at batch 1 and 3 the
  batch plans and the per-node path give the same bytes or the same named error, and the process never dies
  (the runs happen in a child process, ``adversarial_child.py``, which names the mutation it was running);
* inputs of the wrong dtype, shape, strides, 0-d or non-contiguous: the fast input path and the checked path
  agree (same bytes or the same named error);
* corpus ONNX graphs mutated (``convert_fuzz_child.py``): a bundle or one ConversionError line, nothing else;
* regressions found by the fuzzing: an attribute beyond int64 in a plan record (OverflowError), a layernorm
  shift of 2^62 (MemoryError in the reference), avgpool/reduce parameters for which numpy's int64 wraps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from engine_cases import INT8, act, check, const, one_node
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opml import adversarial as adv
from opml import engine
from opml.bundle import DType, decode_bundle, encode_bundle
from opml.errors import OpmlError
from opml.ops import REDUCE_L2, REDUCE_MEAN, REDUCE_SUM

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _child(mode: str, seed: int, count: int, isa: str | None = None) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if isa is not None:
        env["OPML_NATIVE_ISA"] = isa
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", str(HERE / "adversarial_child.py"), mode,
                           str(seed), str(count)], env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    last = next((ln for ln in reversed(lines) if ln.startswith("case")), "before any case")
    assert proc.returncode == 0, f"child died (rc {proc.returncode}) at {last}: {proc.stderr[-2000:]}"
    assert not [ln for ln in lines if ln.startswith("DIVERGE")], [ln for ln in lines if ln.startswith("DIVERGE")]
    assert lines[-1].startswith("done ") and int(lines[-1].split()[1]) > 0, lines[-3:]
    return [ln for ln in lines if ln.startswith("result")]


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_mutated_bundles_same_bytes_on_every_isa(isa: str) -> None:
    """The same mutants give the same bytes (or error) with the native kernels of another instruction set."""
    from opml import native

    if isa not in native._CPU_ISAS:
        pytest.skip(f"this CPU lacks {isa}")
    base = _child("struct", 7, 300)
    other = _child("struct", 7, 300, isa)
    assert base == other


@pytest.mark.parametrize("seed", [0, 100_000])
def test_flipped_bundles_plans_equal_per_node(seed: int) -> None:
    _child("flip", seed, 1000)


@pytest.mark.parametrize("seed", [0, 100_000])
def test_mutated_bundles_plans_equal_per_node(seed: int) -> None:
    _child("struct", seed, 500)


MODELS_A = ["audio_cnn1d", "unet_tiny", "squeezenet1_1", "transformer_encoder", "bert_tiny", "gpt2_tiny",
            "magika_standard_v3_3"]
MODELS_B = ["gru", "lstm", "resnet18", "mobilenet_v3_small", "distilbert_tiny"]


@pytest.mark.parametrize(("seed", "count", "models"), [(0, 190, MODELS_A), (1205, 12, MODELS_B)])
def test_mutated_onnx_graphs_convert_or_give_one_line_conversion_error(seed: int, count: int,
                                                                       models: list[str]) -> None:
    """Corpus graphs with an input dropped or redirected, an attribute, an initializer's shape, an op type or a
    declared input dimension changed: a bundle that runs (or raises OpmlError), or one ConversionError line. The
    seeds include the cases that raised IndexError / ValueError before (rewrites reading inputs by position:
    gpt2 19, magika 34, squeezenet 44; the recurrent expansion on reshaped weights: lstm 1211)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(HERE / "convert_fuzz_child.py"), str(seed), str(count), *models],
                          env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    last = next((ln for ln in reversed(lines) if ln.startswith("case")), "before any case")
    assert proc.returncode == 0 and lines and lines[-1] == "done", f"child died (rc {proc.returncode}) at {last}: " \
        f"{proc.stderr[-2000:]}"
    findings = [ln for ln in lines if ln.startswith("FINDING")]
    assert not findings, findings
    assert sum(ln.startswith("refused") for ln in lines) > 0


def _outcome(b: object, xs: list[object], fast: bool) -> str:
    """Bytes or the error's class name, through the fast path (a list of arrays) or forced through the checked
    path (the same values by name)."""
    try:
        if fast:
            outs = engine.run(b, xs)  # type: ignore[arg-type]
        else:
            outs = engine.run(b, {s.name: x for s, x in zip(b.input_specs(), xs, strict=True)})  # type: ignore[attr-defined]
    except OpmlError as e:
        return type(e).__name__
    return repr([(o.dtype.str, o.shape, o.tobytes()) for o in outs])


BUNDLES = {p.parent.name: decode_bundle(p.read_bytes()) for p in sorted((ROOT / "models").glob("*/model.bundle"))}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BUNDLES)), st.integers(0, 6), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_fast_path_equals_checked_path(name: str, how: int, batch: int, seed: int) -> None:
    b = BUNDLES[name]
    rng = np.random.default_rng(seed)
    xs: list[object] = []
    for s in b.input_specs():
        x = rng.integers(0, 100, size=s.concrete_shape(batch)).astype(s.dtype.np)
        if how == 1:
            x = x.astype(np.float64 if s.dtype.np.kind == "f" else np.int64)  # wrong (castable or not) dtype
        elif how == 2 and x.ndim:
            x = np.asfortranarray(x) if x.ndim > 1 else x[::-1]  # non-C strides, same values shape
        elif how == 3:
            x = np.repeat(x, 2, axis=-1)[..., ::2] if x.ndim else x  # non-contiguous view
        elif how == 4:
            x = x.reshape(-1)  # flattened
        elif how == 5:
            x = np.asarray(x.reshape(-1)[0])  # 0-d
        elif how == 6:
            x = x[:0]  # empty batch
        xs.append(x)
    fast, checked = _outcome(b, xs, True), _outcome(b, xs, False)
    assert fast == checked


def test_window_attributes_beyond_int32_are_refused_at_decode() -> None:
    """A maxpool stride of 2^100 gives valid shapes (one output row), but no implementation computes with it
    (the plan's records are int64 words, the native maxpool refuses it, the reference would not): such a bundle
    is refused when it is encoded or decoded (``opml.shapes.ATTR_BOUNDS``), naming the node and the attribute."""
    b = one_node("maxpool", [act("x", INT8, (1, 1, 4, 4))], act("y", INT8, (1, 1, 1, 1)), kernel=[4, 4],
                 strides=[1 << 100, 1], pads=[0, 0, 0, 0], dilations=[1, 1])
    with pytest.raises(OpmlError, match=r"attribute strides .* is outside \[1, 2147483647\]"):
        encode_bundle(b)


@pytest.mark.parametrize("mult", [1 << 40, (1 << 62) + 5, -(1 << 50), (1 << 31) + 1])
def test_multipliers_beyond_int32_are_refused_at_decode(mult: int) -> None:
    """|sum * mult| could pass 2^63 with a multiplier beyond int32: the engine computes such values exactly, but
    the fraud VM and the Solidity verifier work in 64-bit words, so the bundle is refused before any of them runs."""
    x = np.array([[100, 120, 127, 90], [-128, 6, -7, 8]], dtype=np.int8)
    red = one_node("reduce", [act("x", INT8, x.shape, 0.1, 0)], act("y", INT8, (2,), 0.1, 3), mode=REDUCE_SUM,
                   axes=[1], keepdims=0, mult=mult, shift=20)
    pool = one_node("avgpool", [act("x", INT8, (1, 1, 4, 4), 0.1, 0)], act("y", INT8, (1, 1, 2, 2), 0.1, 0),
                    kernel=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], count_include_pad=1, mult=mult, shift=30)
    for b in (red, pool):
        with pytest.raises(OpmlError, match="attribute mult"):
            encode_bundle(b)


@pytest.mark.parametrize("mode", [REDUCE_SUM, REDUCE_MEAN, REDUCE_L2])
@pytest.mark.parametrize("mult", [(1 << 31) - 1, -(1 << 31) + 1])
def test_reduce_int32_mult_equals_reference(mode: int, mult: int) -> None:
    """At the bounds that decode, the engine gives the definition's integers (the reference)."""
    x = np.array([[100, 120, 127, 90], [-128, 6, -7, 8]], dtype=np.int8)
    check(one_node("reduce", [act("x", INT8, x.shape, 0.1, 0)], act("y", INT8, (2,), 0.1, 3), mode=mode, axes=[1],
                   keepdims=0, mult=mult, shift=20), [x])


@pytest.mark.parametrize("shift", [0, 30, 62])
def test_avgpool_int32_mult_equals_reference(shift: int) -> None:
    x = (np.arange(16, dtype=np.int64) * 17 - 128).astype(np.int8).reshape(1, 1, 4, 4)
    check(one_node("avgpool", [act("x", INT8, x.shape, 0.1, 0)], act("y", INT8, (1, 1, 2, 2), 0.1, 0),
                   kernel=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], count_include_pad=1, mult=(1 << 31) - 1,
                   shift=shift), [x])


def test_reduce_shift_out_of_range_is_a_named_error() -> None:
    x = np.ones((2, 4), dtype=np.int8)
    b = one_node("reduce", [act("x", INT8, x.shape, 0.1, 0)], act("y", INT8, (2,), 0.1, 0), mode=REDUCE_SUM,
                 axes=[1], keepdims=0, mult=1, shift=1 << 62)
    with pytest.raises(OpmlError, match="shift"):
        engine.run(decode_bundle(encode_bundle(b)), [x])


assert DType.INT8 == INT8


def _zero_d_bundle() -> object:
    """A 0-d input to a 0-d output (the session's scalar I/O)."""
    x = act("x", INT8, ())
    return one_node("add", [x, const("c", np.array(3, np.int8))], act("y", INT8, ()), a_mult=1 << 29, b_mult=1 << 29,
                    shift=29, qmin=-128, qmax=127)


RUN_BYTES = {**BUNDLES, "zero_d": decode_bundle(encode_bundle(_zero_d_bundle())),  # type: ignore[arg-type]
             **{n: decode_bundle(encode_bundle(f(1, 1).bundle)) for n, f in
                [("float_cast", adv.CASES["float_cast"]), ("wide_gather", adv.CASES["wide_gather"]),
                 ("where_broadcast", adv.CASES["where_broadcast"])]}}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(RUN_BYTES)), st.integers(-3, 3), st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_run_bytes_on_any_bytes(name: str, delta: int, batch: int, seed: int) -> None:
    """The precompile's entry point on lengths around the valid ones and random bytes (NaN and infinity bit
    patterns in float inputs, indices out of range): output of exactly ``output_length`` bytes, equal with the
    plans off, or an OpmlError (the same one for output_length and run_bytes)."""
    b = RUN_BYTES[name]
    specs = b.input_specs()
    fixed = sum(engine.sample_bytes(s) for s in specs if not (s.shape and s.shape[0] < 0))
    per = sum(engine.sample_bytes(s) for s in specs if s.shape and s.shape[0] < 0)
    n = max(0, fixed + batch * per + delta)
    data = np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes()
    try:
        want = engine.output_length(b, n)
    except OpmlError as e:
        with pytest.raises(type(e)):
            engine.run_bytes(b, data)
        return
    try:
        out = engine.run_bytes(b, data)
    except OpmlError as e:
        engine.set_batch_plans(False)
        try:
            with pytest.raises(type(e)):
                engine.run_bytes(b, data)
        finally:
            engine.set_batch_plans(None)
        return
    assert len(out) == want
    engine.set_batch_plans(False)
    try:
        assert engine.run_bytes(b, data) == out
    finally:
        engine.set_batch_plans(None)


@pytest.mark.parametrize("value", [
    [[1, 2], [3]], "abc", b"abc", None, {"a": 1}, 1 << 100, np.array([1 << 70]), np.zeros((1, 64), np.complex64),
    np.zeros((1, 64), "U3"), np.array([object()] * 64).reshape(1, 64), np.zeros((0, 64), np.float32),
    np.zeros((1, 65), np.float32), np.zeros((1, 64), np.int64)])
@pytest.mark.parametrize("by_name", [False, True])
def test_malformed_input_values_are_inference_input_errors(value: object, by_name: bool) -> None:
    """Found: a ragged nested list escaped np.asarray as ValueError."""
    from opml.errors import InferenceInputError

    b = BUNDLES["digits_mlp"]
    with pytest.raises(InferenceInputError):
        engine.run(b, {b.input_specs()[0].name: value} if by_name else [value])


@pytest.mark.parametrize("name", sorted(BUNDLES) + ["float_cast", "wide_gather", "broadcast_add_int16", "long_softmax"])
@pytest.mark.parametrize("batch", [1, 3])
def test_misaligned_read_only_inputs_take_the_fast_path_safely(name: str, batch: int) -> None:
    """C-contiguous inputs of the declared dtype skip check_input: misaligned (offset 1 in a buffer) and read-only
    ones give the bytes the aligned copies give."""
    b = BUNDLES[name] if name in BUNDLES else adv.CASES[name](1, 1).bundle
    rng = np.random.default_rng(batch)
    xs, odd = [], []
    for s in b.input_specs():
        dt = s.dtype.np
        shape = s.concrete_shape(batch)
        a = (rng.standard_normal(shape) if dt.kind == "f" else rng.integers(0, 50, size=shape)).astype(dt)
        raw = b"\x00" + a.tobytes()
        m = np.frombuffer(raw, dtype=dt, count=a.size, offset=1).reshape(a.shape)
        assert m.flags.c_contiguous and not m.flags.writeable
        xs.append(a)
        odd.append(m)
    assert _outcome(b, odd, True) == _outcome(b, xs, True)
