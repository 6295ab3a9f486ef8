"""``aievm model convert``, ``aievm model show``, ``aievm infer`` and ``aievm engine``."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click
import numpy as np

from . import main, model


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@model.command("convert")
@click.argument("onnx_model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="bundle file to write")
@click.option("--calibration", type=click.Path(dir_okay=False),
              help=".npy (one input) or .npz (by input name); an array with one axis more than its model input "
                   "holds several calibration batches (a fixed-batch model is calibrated on all of them)")
@click.option("--name", help="model name stored in the bundle metadata")
@click.option("--weight-bits", type=click.IntRange(2, 8), default=8, show_default=True,
              help="bits of the per-channel float weight quantization (7: the engine's faster exact u8 x s8 GEMM)")
@click.option("--accuracy", type=click.Choice(["int8", "auto"]), default="int8", show_default=True,
              help="int8: plain int8 with the options below; auto: choose the range method, bias correction and "
                   "int16 tensors by measured cosine against onnxruntime float32 on the calibration data")
@click.option("--calibration-method", type=click.Choice(["minmax", "percentile", "mse"]), default="minmax",
              show_default=True, help="how activation ranges are chosen from the calibration data")
@click.option("--bias-correction/--no-bias-correction", default=False, show_default=True,
              help="fold the mean output shift of weight rounding into the biases")
@click.option("--int16", "int16", default="", help="comma-separated ONNX value names (Conv, Gemm, MatMul or Add "
                                                   "outputs) to produce as 13-bit int16 activations")
@click.option("--target-cosine", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.99, show_default=True,
              help="--accuracy auto: the mean cosine (worst output) to reach with as few int16 tensors as it can")
@click.option("--max-conversions", type=click.IntRange(1, 1000), default=32, show_default=True,
              help="--accuracy auto: how many trial conversions the search may run")
@click.option("--report/--no-report", default=None,
              help="print the cosine per output against onnxruntime float32 on the calibration data (to stderr; "
                   "default: on when an accuracy option is given)")
def convert_cmd(onnx_model: str, output: str, calibration: str | None, name: str | None, weight_bits: int,
                accuracy: str, calibration_method: str, bias_correction: bool, int16: str, target_cosine: float,
                max_conversions: int, report: bool | None) -> None:
    """Convert an ONNX model into a bundle and print its model address.

    The default (plain int8, minmax ranges) gives the same bytes as always; the accuracy options are
    opt-in, recorded in the bundle metadata, and the report prints the flags that reproduce a choice."""
    from opml.convert import convert
    from opml.convert.accuracy import choose_options, report_for
    from opml.convert.calibrate import AccuracyOptions
    from opml.errors import OpmlError

    names = frozenset(n.strip() for n in int16.split(",") if n.strip())
    label = name or Path(onnx_model).stem
    try:
        opts = AccuracyOptions(calibration_method, bias_correction, names)
        if accuracy == "auto" and not opts.is_default:
            _fail("--accuracy auto chooses the calibration method, bias correction and int16 tensors itself; "
                  "give either --accuracy auto or those options")
        if report is None:
            report = accuracy == "auto" or not opts.is_default
        if accuracy == "auto":
            result = choose_options(onnx_model, calibration, name=label, weight_bits=weight_bits,
                                    target_cosine=target_cosine, max_conversions=max_conversions)
        elif report:
            result = report_for(onnx_model, calibration, opts, name=label, weight_bits=weight_bits)
        else:
            result = None
            bundle = convert(onnx_model, calibration, name=label, weight_bits=weight_bits, accuracy=opts)
        if result is not None:
            bundle = result.bundle
        data = bundle.encoded
    except OpmlError as e:
        _fail(str(e))
    _write_atomic(Path(output), data)
    if result is not None:
        _print_accuracy(result, accuracy == "auto", target_cosine)
    click.echo(bundle.address_hex)


def _print_accuracy(result: object, auto: bool, target: float) -> None:
    """The accuracy report (stderr, so stdout stays the address)."""
    from opml.convert.accuracy import AccuracyResult

    assert isinstance(result, AccuracyResult)
    o = result.options

    def say(line: str) -> None:
        click.echo(line, err=True)

    how = f"chosen by --accuracy auto in {result.conversions} conversions" if auto else "as given"
    say(f"accuracy options ({how}): {o.describe()}")
    for r in result.report:
        say(f"  output {r.name}: {r.metric} to onnxruntime float32 on the calibration data: mean {r.mean:.5f} "
            f"min {r.min:.5f}")
    for r in result.baseline or []:
        say(f"  plain int8 (minmax)  {r.name}: {r.metric} mean {r.mean:.5f} min {r.min:.5f}")
    if auto and result.score < target:
        say(f"  target cosine {target} not reached (best found above)")
    if o.int16:
        say(f"  int16 tensors ({len(o.int16)}): {', '.join(sorted(o.int16))}")
    if result.baseline_bundle is not None and result.baseline_bundle.encoded != result.bundle.encoded:
        from opml.cost import model_cost

        c, p = model_cost(result.bundle, 1), model_cost(result.baseline_bundle, 1)
        say(f"  cost per sample: {c.macs} MACs, {c.elementwise} elementwise, {len(result.bundle.nodes)} nodes "
            f"(plain int8: {p.macs}, {p.elementwise}, {len(result.baseline_bundle.nodes)})")
    readers = sorted(set(result.int8_readers))
    if readers:
        say(f"  no int16 path (read an int8 copy): {', '.join(readers)}")


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("N" if d == -1 else (f"{-d}N" if d < 0 else str(d)) for d in shape) + "]"


@model.command("show")
@click.argument("bundle_path", type=click.Path(dir_okay=False))
def show_cmd(bundle_path: str) -> None:
    """Print a bundle's inputs, outputs, ops, parameter count, MACs per sample and address."""
    from collections import Counter

    from opml.bundle import load_bundle
    from opml.cost import model_cost, parameter_count
    from opml.errors import OpmlError

    try:
        b = load_bundle(bundle_path)
    except OpmlError as e:
        _fail(str(e))
    click.echo(f"address     {b.address_hex}")
    click.echo(f"source      {b.metadata.get('source', '?')}  ({len(b.encoded)} bytes)")
    for kind, specs in (("input", b.input_specs()), ("output", b.output_specs())):
        for s in specs:
            click.echo(f"{kind:<11} {s.name}  {s.dtype.name.lower()}  {_fmt_shape(s.shape)}")
    ops = Counter(n.op for n in b.nodes)
    click.echo(f"ops         {len(b.nodes)} nodes: " + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())))
    cost = model_cost(b, 1)
    click.echo(f"parameters  {parameter_count(b)}")
    click.echo(f"MACs/sample {cost.macs}")


@main.command("infer")
@click.argument("bundle_path", type=click.Path(dir_okay=False))
@click.option("--input", "inputs", multiple=True, required=True, type=click.Path(dir_okay=False),
              help=".npy per model input, in declared order (or one .npz by input name)")
@click.option("--output", "output", type=click.Path(dir_okay=False), help=".npy (one output) or .npz to write")
def infer_cmd(bundle_path: str, inputs: tuple[str, ...], output: str | None) -> None:
    """Run a bundle on inputs; write the outputs (or print them)."""
    from opml.bundle import load_bundle
    from opml.engine import run
    from opml.errors import OpmlError

    try:
        b = load_bundle(bundle_path)
        if len(inputs) == 1 and inputs[0].endswith(".npz"):
            with np.load(inputs[0], allow_pickle=False) as z:
                args: object = {k: z[k] for k in z.files}
        else:
            args = [np.load(p, allow_pickle=False) for p in inputs]
        outs = run(b, args)  # type: ignore[arg-type]
    except (OSError, ValueError) as e:
        _fail(f"cannot read input: {e}")
    except OpmlError as e:
        _fail(str(e))
    names = [s.name for s in b.output_specs()]
    if output is None:
        for n, o in zip(names, outs, strict=True):
            click.echo(f"{n}: {np.array2string(o, threshold=50)}")
        return
    if output.endswith(".npz"):
        np.savez(output, **dict(zip(names, outs, strict=True)))  # type: ignore[arg-type]
    else:
        if len(outs) != 1:
            _fail("the model has several outputs: write them to a .npz file")
        np.save(output, outs[0])


@main.command("engine")
def engine_cmd() -> None:
    """Show how this machine runs the engine: native kernels and instruction sets, threads, float environment."""
    from opml import native  # an OPML_NATIVE_ISA the CPU lacks stops `aievm` before this (cli/__init__.py)
    from opml.errors import OpmlError
    from opml.f32prog import check_float_environment
    from opml.parallel import worker_count

    click.echo(native.describe())
    if native.available():
        forced = os.environ.get("OPML_NATIVE_ISA", "").strip().lower() not in ("", "auto")
        how = "(forced by OPML_NATIVE_ISA)" if forced else "(the fastest found; OPML_NATIVE_ISA=name forces one)"
        click.echo(f"instruction sets: found {', '.join(native.cpu_isas())}; using {native.isa_name()} {how}")
    click.echo(f"threads: {worker_count()} (OPML_THREADS, else OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, else CPUs)")
    try:
        check_float_environment()
        click.echo("float environment: IEEE round-to-nearest-even, subnormals kept (deterministic)")
    except OpmlError as e:
        _fail(f"float environment: {e}")
