"""Bit-identical inference and conversion across runs, processes, thread counts, BLAS kernels and SIMD levels.

Each example model is converted once per session (``examples`` fixture). Its outputs, and every
intermediate tensor (the graph re-declared with all node outputs as graph outputs), are hashed for a
fixed input batch: the 450 test samples plus random inputs outside the calibration range (to reach
the saturating paths). Subprocesses then recompute the hashes, and reconvert each model, under
different environments:

- ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` = 1 and 2,
- ``OPENBLAS_CORETYPE`` = each BLAS kernel family this CPU can run (forcing one it cannot run, e.g.
  SkylakeX without AVX-512, dies with SIGILL, so the list is filtered by the CPU's features),
- ``NPY_DISABLE_CPU_FEATURES`` turning off AVX2/FMA3/AVX-512 (only features the CPU has: numpy
  refuses to start otherwise on some versions), and every dispatchable feature at once,
- all of the above combined,
- opml's native kernels off (``OPML_NATIVE=0``: the numpy path) and forced to their portable C
  version (``OPML_NATIVE_ISA=generic``: no AVX2), each also with one thread, and forced to each other
  instruction set (``avx2``, ``avx512vnni``, ``avxvnni``, ``amx``; one the CPU lacks is skipped, naming it).

Each subprocess also reports the BLAS core and numpy CPU features it actually ran with, so a variant
that silently had no effect is caught.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from opml import native
from opml.bundle import Bundle, decode_bundle
from opml.convert import convert
from opml.engine import _CACHE, run, run_bytes

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("digits_mlp", "digits_cnn", "encoder")


def _cpu_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__  # type: ignore[no-redef]
    return {f: bool(__cpu_features__.get(f)) for f in __cpu_dispatch__}


FEATURES = _cpu_features()
PRESENT = [f for f, on in FEATURES.items() if on]
NO_AVX2_AVX512 = [f for f in PRESENT if f.startswith("AVX512") or f in ("AVX2", "FMA3")]

# OpenBLAS core types, each with the numpy CPU features it needs
_X86_CORETYPES = {
    "Prescott": [],
    "Nehalem": ["SSE42"],
    "Sandybridge": ["AVX"],
    "Haswell": ["AVX2", "FMA3"],
    "SkylakeX": ["AVX512F", "AVX512CD", "AVX512_SKX"],
}
if platform.machine().lower() in ("x86_64", "amd64"):
    CORETYPES = [c for c, need in _X86_CORETYPES.items() if all(FEATURES.get(f) for f in need)]
    LOWEST = "Prescott"
elif platform.machine().lower() in ("aarch64", "arm64"):
    CORETYPES, LOWEST = ["ARMV8"], "ARMV8"
else:
    CORETYPES, LOWEST = [], None

THREADS = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}
VARIANTS: dict[str, dict[str, str]] = {
    "same-env": {},
    "threads-1": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    "threads-2": {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
    **{f"coretype-{c}": {"OPENBLAS_CORETYPE": c} for c in CORETYPES},
}
if NO_AVX2_AVX512:
    VARIANTS["npy-no-avx2-avx512"] = {"NPY_DISABLE_CPU_FEATURES": ",".join(NO_AVX2_AVX512)}
if PRESENT:
    VARIANTS["npy-baseline-only"] = {"NPY_DISABLE_CPU_FEATURES": ",".join(PRESENT)}
VARIANTS["native-off"] = {"OPML_NATIVE": "0"}
VARIANTS["native-generic-threads-1"] = {"OPML_NATIVE_ISA": "generic", "OMP_NUM_THREADS": "1",
                                        "OPENBLAS_NUM_THREADS": "1", "OPML_THREADS": "1"}
for _isa in native.ISAS[1:]:
    VARIANTS[f"native-isa-{_isa}"] = {"OPML_NATIVE_ISA": _isa}
VARIANTS["everything-minimal"] = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    **({"OPENBLAS_CORETYPE": LOWEST} if LOWEST else {}),
    **({"NPY_DISABLE_CPU_FEATURES": ",".join(PRESENT)} if PRESENT else {}),
}


def all_tensors(b: Bundle) -> Bundle:
    """The same graph with every node output also a graph output."""
    outs = tuple(dict.fromkeys(b.outputs + tuple(n.outputs[0] for n in b.nodes)))
    return Bundle(b.tensors, b.nodes, b.inputs, outs, b.metadata)


def digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def fixed_inputs(test_x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(2024)
    wild = rng.uniform(-3.0, 4.0, size=(64,) + test_x.shape[1:]).astype(np.float32)
    return np.concatenate([test_x, wild])


def inference_hashes(b: Bundle, x: np.ndarray) -> dict[str, str]:
    return {
        "outputs": digest(run(b, [x])),
        "all_tensors": digest(run(all_tensors(b), [x])),
        "run_bytes": hashlib.sha256(run_bytes(b, x.tobytes())).hexdigest(),
    }


# The subprocess: hash inference of the given bundles, reconvert the models, report the environment.
CHILD = r"""
import hashlib, json, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from test_determinism import inference_hashes, _cpu_features
from opml.bundle import load_bundle
from opml.convert import convert
work, root = sys.argv[1], sys.argv[3]
out = {"models": {}}
for name in json.loads(sys.argv[4]):
    b = load_bundle(f"{work}/{name}.bundle")
    x = np.load(f"{work}/{name}.x.npy")
    c = convert(f"{root}/models/{name}/model.onnx", np.load(f"{root}/models/{name}/calib.npy"), name=name)
    out["models"][name] = {**inference_hashes(b, x), "bundle_sha256": hashlib.sha256(c.encoded).hexdigest(),
                           "address": c.address_hex}
from threadpoolctl import threadpool_info
out["blas"] = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads")) for i in threadpool_info()]
out["features"] = _cpu_features()
from opml import native
out["native"] = native.describe()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def expected(examples: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """In-process hashes of every example, and a work dir with the bundles and inputs for subprocesses."""
    work = tmp_path_factory.mktemp("determinism")
    res: dict = {"work": work, "models": {}}
    for name in NAMES:
        ex = examples[name]
        x = fixed_inputs(ex.test_x)
        (work / f"{name}.bundle").write_bytes(ex.bundle.encoded)
        np.save(work / f"{name}.x.npy", x)
        res["models"][name] = {**inference_hashes(ex.bundle, x),
                               "bundle_sha256": hashlib.sha256(ex.bundle.encoded).hexdigest(),
                               "address": ex.bundle.address_hex}
    from threadpoolctl import threadpool_info

    res["blas"] = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads")) for i in threadpool_info()]
    return res


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    if extra:  # a variant starts from a clean slate for the variables it is about
        for k in THREADS | {"OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES",
                            "OPML_NATIVE", "OPML_NATIVE_ISA", "OPML_THREADS"}:
            env.pop(k, None)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_subprocess_bit_identical(expected: dict, variant: str) -> None:
    extra = VARIANTS[variant]
    forced_isa = extra.get("OPML_NATIVE_ISA")
    if forced_isa and forced_isa not in native.cpu_isas():
        pytest.skip(f"CPU lacks {native.CPU_FLAGS[forced_isa]}" if native.available() else native.describe())
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(expected["work"]), str(Path(__file__).parent), str(ROOT), json.dumps(NAMES)],
        env=_child_env(extra), capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"{variant}: child failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    got = json.loads(line[len("RESULT "):])
    for name in NAMES:
        want, have = expected["models"][name], got["models"][name]
        for key in ("outputs", "all_tensors", "run_bytes"):
            assert have[key] == want[key], f"{variant}: {name} {key} differ from the in-process run"
        assert have["bundle_sha256"] == want["bundle_sha256"], f"{variant}: reconverting {name} gave other bytes"
        assert have["address"] == want["address"], f"{variant}: reconverting {name} gave another address"
    # the variant really took effect
    if "OPENBLAS_CORETYPE" in extra:
        default = {arch for api, arch, _ in expected["blas"] if api == "openblas"}
        forced = {arch for api, arch, _ in got["blas"] if api == "openblas"}
        assert forced, f"{variant}: no OpenBLAS found in the child"
        if extra["OPENBLAS_CORETYPE"].lower() not in {a.lower() for a in default if a}:
            assert forced != default, f"{variant}: OPENBLAS_CORETYPE had no effect ({forced})"
    if "NPY_DISABLE_CPU_FEATURES" in extra:
        for f in extra["NPY_DISABLE_CPU_FEATURES"].split(","):
            assert not got["features"][f], f"{variant}: numpy still uses {f}"
    if extra.get("OPML_NATIVE") == "0":
        assert "disabled" in got["native"], got["native"]
    if forced_isa:
        assert f"loaded ({forced_isa})" in got["native"], got["native"]
    if extra.get("OPENBLAS_NUM_THREADS"):
        n = int(extra["OPENBLAS_NUM_THREADS"])
        assert all(t == n for api, _, t in got["blas"] if api == "openblas"), got["blas"]


def test_variants_cover_the_required_environments() -> None:
    """The environment matrix is not empty where it matters (no silent reduction to a no-op)."""
    assert {"threads-1", "threads-2"} <= set(VARIANTS)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert len(CORETYPES) >= 3, CORETYPES  # Prescott, Nehalem, Sandybridge run on any x86-64 with AVX
        if FEATURES.get("AVX2"):
            assert "npy-no-avx2-avx512" in VARIANTS


def test_repeated_runs_in_process(examples: dict, expected: dict) -> None:
    for name in NAMES:
        b = examples[name].bundle
        x = np.load(expected["work"] / f"{name}.x.npy")
        want = expected["models"][name]
        for _ in range(2):
            assert inference_hashes(b, x) == {k: want[k] for k in ("outputs", "all_tensors", "run_bytes")}
        _CACHE.clear()  # a freshly prepared plan, from freshly decoded bytes
        fresh = decode_bundle(b.encoded)
        assert inference_hashes(fresh, x)["all_tensors"] == want["all_tensors"]


def test_thread_limits_in_process(examples: dict, expected: dict) -> None:
    from threadpoolctl import threadpool_limits

    for limit in (1, 2):
        with threadpool_limits(limits=limit):
            for name in NAMES:
                x = np.load(expected["work"] / f"{name}.x.npy")
                assert inference_hashes(examples[name].bundle, x)["all_tensors"] == \
                    expected["models"][name]["all_tensors"], (name, limit)


@pytest.mark.parametrize("name", NAMES)
def test_convert_twice_same_bytes_and_address(examples: dict, name: str) -> None:
    ex = examples[name]
    again = convert(ex.onnx_path, ex.calib.copy(), name=name)
    assert again.encoded == ex.bundle.encoded
    assert again.address == ex.bundle.address
    # also from the serialized model and a list-of-arrays calibration
    third = convert(ex.onnx_path.read_bytes(), [ex.calib], name=name)
    assert third.encoded == ex.bundle.encoded and third.address_hex == ex.bundle.address_hex
