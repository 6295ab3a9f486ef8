"""``aievm trace`` / ``aievm replay`` through click's CliRunner: tables, divergence, bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ai_evm.cli import main

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "models" / "digits_mlp" / "model.bundle")
CNN = str(ROOT / "models" / "digits_cnn" / "model.bundle")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("replay")
    x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
    paths = {"x1": d / "x1.npy", "x2": d / "x2.npy", "bad": d / "bad.npy", "all": d / "all.npy"}
    np.save(paths["x1"], x[:1])
    np.save(paths["x2"], x[1:2])
    np.save(paths["bad"], x[:1, :10])
    np.save(paths["all"], x[:3])
    out = {k: str(v) for k, v in paths.items()}
    out["dir"] = str(d)
    res = CliRunner().invoke(main, ["trace", MLP, "--input", out["x1"], "-o", str(d / "t1.json")])
    assert res.exit_code == 0, res.output
    out["t1"] = str(d / "t1.json")
    return out


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_node_table_and_steps(files) -> None:
    res = _run("replay", MLP, "--input", files["x1"], "--node", "1", "--step", "40",
               "--html", files["dir"] + "/r.html")
    assert res.exit_code == 0, res.output
    for word in ("quantize", "linear", "softmax", "dequantize", "4,096", "MAC", "witness", "step 40"):
        assert word in res.output
    assert "<html" in Path(files["dir"], "r.html").read_text().lower()
    doc = json.loads(Path(files["t1"]).read_text())
    assert doc["nodes"][1]["output_root"][2:18] in res.output


def test_against_same_and_other_input(files) -> None:
    res = _run("replay", MLP, "--input", files["x1"], "--against", files["t1"])
    assert res.exit_code == 0 and "agree on every node" in res.output
    res = _run("replay", MLP, "--input", files["x2"], "--against", files["t1"])
    assert res.exit_code == 0 and "different inputs" in res.output
    res = _run("replay", MLP, "--input", files["all"], "--sample", "0", "--against", files["t1"])
    assert res.exit_code == 0 and "agree on every node" in res.output


@pytest.mark.parametrize(("node", "element"), [(1, 0), (1, 37), (2, 31), (3, 9)])
def test_against_first_diverging_step(files, node: int, element: int) -> None:
    from fraud_vm.compiler import compile_context, context_for
    from opml.bundle import load_bundle

    doc = json.loads(Path(files["t1"]).read_text())
    nd = doc["nodes"][node]
    data = bytearray(base64.b64decode(nd["data"]))
    data[element] ^= 0x01  # int8 output: one element changes
    nd["data"] = base64.b64encode(bytes(data)).decode()
    for later in doc["nodes"][node:]:
        later["state"] = "0x" + "11" * 32
    other = Path(files["dir"], f"t_{node}_{element}.json")
    other.write_text(json.dumps(doc))
    res = _run("replay", MLP, "--input", files["x1"], "--against", str(other))
    assert res.exit_code == 0, res.output
    # the step that writes the corrupted element, found from the program's write schedule
    prog = compile_context(context_for(load_bundle(MLP), node, 1))

    def written(s: int) -> bool:
        w = prog.written_at(s)
        return bool(w[element]) if isinstance(w, np.ndarray) else element < w

    expected = next(s for s in range(prog.num_steps) if written(s + 1))
    assert f"first diverging node: {node} " in res.output
    assert f"first diverging VM step: {expected} " in res.output


def test_bad_inputs(files, tmp_path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    wrong_format = tmp_path / "wrong.json"
    wrong_format.write_text(json.dumps({"format": "x"}))
    cases = [
        (("replay", MLP, "--input", str(tmp_path / "missing.npy")), "does not exist"),
        (("replay", str(tmp_path / "missing.bundle"), "--input", files["x1"]), "does not exist"),
        (("replay", MLP, "--input", files["bad"]), "expected shape"),
        (("replay", MLP, "--input", files["x1"], "--against", str(bad_json)), "is not JSON"),
        (("replay", MLP, "--input", files["x1"], "--against", str(wrong_format)), "format"),
        (("replay", CNN, "--input", files["x1"], "--against", files["t1"]), "trace of model"),
        (("replay", MLP, "--input", files["x1"], "--node", "99"), "outside"),
        (("replay", MLP, "--input", files["x1"], "--node", "1", "--step", "5000"), "outside"),
        (("replay", MLP, "--input", files["x1"], "--step", "3"), "needs --node"),
        (("replay", MLP, "--input", files["all"], "--sample", "7"), "not in the input"),
        (("replay", MLP, "--input", files["x1"], "--input", files["x1"]), "takes 1 inputs"),
        (("trace", MLP, "--input", files["bad"], "-o", str(tmp_path / "t.json")), "expected shape"),
        (("replay", files["x1"], "--input", files["x1"]), "cannot load bundle"),
    ]
    for args, message in cases:
        res = _run(*args)
        assert res.exit_code != 0 and message in res.output, (args, res.output)
        assert "Traceback" not in res.output
