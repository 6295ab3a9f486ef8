"""The committed step vectors are up to date, cover every instruction kind, pass verify_step, and
every failure vector fails with exactly its named error."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from fraud_vm import errors as E
from fraud_vm.compiler import compile_context, decode_context
from fraud_vm.isa import Kind
from fraud_vm.state import decode_state
from fraud_vm.vm import StepWitness, check_step, verify_step

ROOT = Path(__file__).resolve().parents[2]
VEC_DIR = ROOT / "tests" / "vectors" / "fraud_vm"

# verifier errors that no program derived from a well-formed context can reach (defense in depth:
# scales, dtypes and element addresses are validated when the instruction is derived)
UNREACHABLE = {E.InvalidScale, E.InvalidDType, E.ElementOutOfRange}


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_gen_fraud_vm_vectors", ROOT / "scripts" / "gen_fraud_vm_vectors.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _files() -> list[Path]:
    return sorted(VEC_DIR.glob("*.json"))


def _failures() -> list[tuple[str, dict[str, Any]]]:
    return [(p.stem, f) for p in _files() for f in json.loads(p.read_text())["failures"]]


def _hex(s: str) -> bytes:
    return bytes.fromhex(s[2:])


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
        data = _hex(v["witness_calldata"])
        pre, post = _hex(v["pre_state_hash"]), _hex(v["post_state_hash"])
        assert StepWitness.decode(data) == w and w.encode() == data and w.size == len(data)
        assert verify_step(pre, w) == verify_step(pre, data) == post
        check_step(pre, data, post)
        assert w.size_bytes() == v["witness_bytes"] < 8192
        state = decode_state(w.pre_state)
        assert state.step == v["step"]
        assert compile_context(decode_context(w.context)).instr(state.step).to_json() == v["instruction"]


@pytest.mark.parametrize(("case", "failure"), _failures(), ids=lambda x: x if isinstance(x, str) else x["name"])
def test_failure_vector_fails_with_its_named_error(case: str, failure: dict[str, Any]) -> None:
    cls = getattr(E, failure["error"])
    assert failure["error"] in E.ERROR_NAMES and _hex(failure["selector"]) == cls.selector()
    with pytest.raises(E.FraudVMError) as info:
        check_step(_hex(failure["pre_state_hash"]), _hex(failure["witness_calldata"]), _hex(failure["post_state_hash"]))
    assert type(info.value) is cls, f"{case}/{failure['name']}: {info.value!r}"


def test_failure_vectors_cover_every_reachable_verifier_error() -> None:
    verifier = [c for c in E.ERROR_CLASSES if not issubclass(c, E.GameError)]
    covered = {f["error"] for _, f in _failures()}
    missing = {c.__name__ for c in verifier if c not in UNREACHABLE} - covered
    assert not missing, f"no failure vector for {sorted(missing)}"
    names = [f["name"] for _, f in _failures()]
    assert len(names) == len(set(names))
