"""The committed step vectors are up to date, cover every instruction kind, and pass verify_step."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fraud_vm.compiler import compile_context, decode_context
from fraud_vm.errors import InvalidWitness
from fraud_vm.isa import Kind
from fraud_vm.state import decode_state
from fraud_vm.vm import StepWitness, verify_step

ROOT = Path(__file__).resolve().parents[2]
VEC_DIR = ROOT / "tests" / "vectors" / "fraud_vm"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_gen_fraud_vm_vectors", ROOT / "scripts" / "gen_fraud_vm_vectors.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _files() -> list[Path]:
    return sorted(VEC_DIR.glob("*.json"))


def test_vectors_are_up_to_date() -> None:
    files = _generator().generate()
    assert sorted(files) == [p.name for p in _files()], "run scripts/gen_fraud_vm_vectors.py"
    for name, text in files.items():
        assert (VEC_DIR / name).read_text() == text, f"{name} is stale: run scripts/gen_fraud_vm_vectors.py"


def test_every_instruction_kind_has_a_vector() -> None:
    kinds = {v["instruction"]["kind"] for p in _files() for v in json.loads(p.read_text())["vectors"]}
    assert kinds == {k.name for k in Kind}


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_vector_passes_verify_step(path: Path) -> None:
    doc = json.loads(path.read_text())
    for v in doc["vectors"]:
        w = StepWitness.from_json(v["witness"])
        pre = bytes.fromhex(v["pre_state_hash"][2:])
        assert verify_step(pre, w).hex() == v["post_state_hash"][2:]
        assert w.size_bytes() == v["witness_bytes"] < 8192
        state = decode_state(w.pre_state)
        assert state.step == v["step"]
        assert compile_context(decode_context(w.context)).instr(state.step).to_json() == v["instruction"]
        if w.words:
            r, i, val = w.words[-1]
            bad = StepWitness(w.pre_state, w.context, w.words[:-1] + ((r, i, bytes(31) + bytes([val[-1] ^ 1])),),
                              w.siblings)
            with pytest.raises(InvalidWitness):
                verify_step(pre, bad)
