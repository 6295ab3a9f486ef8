"""Named errors: stable names and selectors, documented in docs/fraud_vm.md exactly as defined."""

from __future__ import annotations

import re
from pathlib import Path

import sha3

from fraud_vm import errors as E

DOC = Path(__file__).resolve().parents[2] / "docs" / "fraud_vm.md"
BASES = (E.InvalidWitness, E.InvalidStep, E.GameError, E.UnsupportedOp)


def test_names_selectors_and_bases() -> None:
    assert len(set(E.ERROR_NAMES)) == len(E.ERROR_NAMES) == len(E.ERROR_CLASSES)
    for cls in E.ERROR_CLASSES:
        name = cls.__name__
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name) and getattr(E, name) is cls
        assert cls.selector() == sha3.keccak_256(f"{name}()".encode()).digest()[:4]
        assert E.error_from_selector(cls.selector() + b"\0" * 28) is cls
        assert issubclass(cls, BASES) and E.ERROR_DOCS[name] and "\n" not in E.ERROR_DOCS[name]
        assert E.is_named(cls("detail")) and str(cls("detail")).endswith(": detail")
    unnamed = (E.FraudVMError, E.InvalidWitness, E.InvalidStep, E.GameError)
    assert not any(E.is_named(b("x")) for b in unnamed) and E.error_from_selector(b"\0\0\0\0") is None


def test_docs_list_every_error_with_its_selector() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| `0x([0-9a-f]{8})` \|", DOC.read_text(), re.M)
    assert [r[0] for r in rows] == list(E.ERROR_NAMES), "docs/fraud_vm.md 'Errors' differs from fraud_vm.errors"
    for name, base, sel in rows:
        cls = getattr(E, name)
        assert cls.__mro__[1].__name__ == base and cls.selector().hex() == sel
