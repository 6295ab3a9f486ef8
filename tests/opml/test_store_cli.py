"""``aievm model add|get|ls|rm|prove|verify-proof`` and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ai_evm.cli import main
from opml.commitment import WordProof, verify
from opml.store import LocalStore
from opml.store.testing import example_bundle, hub_process

BUNDLE = example_bundle([5000, 64], seed=31)
ADDR_HEX = "0x" + BUNDLE.address.hex()


@pytest.fixture
def env(tmp_path: Path) -> tuple[CliRunner, Path, Path]:
    src = tmp_path / "model.bundle"
    src.write_bytes(BUNDLE.encoded)
    return CliRunner(), tmp_path / "store", src


def _run(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_add_ls_get_rm(env: tuple[CliRunner, Path, Path], tmp_path: Path) -> None:
    runner, store, src = env
    code, out, _ = _run(runner, "model", "add", str(src), "--store", str(store))
    assert code == 0 and out.strip() == ADDR_HEX
    code, out, _ = _run(runner, "model", "ls", "--store", str(store))
    assert code == 0 and out.split() == [ADDR_HEX, str(len(BUNDLE.encoded))]
    code, out, _ = _run(runner, "model", "ls", "--store", str(store), "--json")
    assert json.loads(out) == {"models": [{"address": ADDR_HEX, "size": len(BUNDLE.encoded)}]}
    dest = tmp_path / "out" / "copy.bundle"
    dest.parent.mkdir()
    code, _, err = _run(runner, "model", "get", ADDR_HEX, "-o", str(dest), "--store", str(store))
    assert code == 0 and dest.read_bytes() == BUNDLE.encoded and "wrote" in err
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.bundle"]
    assert _run(runner, "model", "rm", ADDR_HEX, "--store", str(store))[0] == 0
    assert _run(runner, "model", "rm", ADDR_HEX, "--store", str(store))[0] == 3


def test_store_from_environment(env: tuple[CliRunner, Path, Path]) -> None:
    runner, store, src = env
    r = runner.invoke(main, ["model", "add", str(src)], env={"AIEVM_STORE": str(store)})
    assert r.exit_code == 0 and LocalStore(store).list() == [BUNDLE.address]


def test_errors_have_messages_and_exit_codes(env: tuple[CliRunner, Path, Path], tmp_path: Path) -> None:
    runner, store, src = env
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a bundle")
    code, _, err = _run(runner, "model", "add", str(junk), "--store", str(store))
    assert code == 1 and "not a valid bundle" in err
    code, _, err = _run(runner, "model", "add", str(tmp_path / "absent"), "--store", str(store))
    assert code == 1 and "absent" in err
    code, _, err = _run(runner, "model", "get", "0x12", "-o", str(tmp_path / "o"), "--store", str(store))
    assert code == 1 and "not a model address" in err
    code, _, err = _run(runner, "model", "get", ADDR_HEX, "-o", str(tmp_path / "o"), "--store", str(store))
    assert code == 3 and "not in" in err
    LocalStore(store).put(BUNDLE)
    LocalStore(store).path(ADDR_HEX).write_bytes(BUNDLE.encoded[:-1])
    code, _, err = _run(runner, "model", "get", ADDR_HEX, "-o", str(tmp_path / "o"), "--store", str(store))
    assert code == 4 and ADDR_HEX in err and not (tmp_path / "o").exists()
    code, _, err = _run(runner, "model", "ls", "--store", "ftp://nowhere")
    assert code == 1 and "unknown store URI" in err


def test_prove_and_verify_proof(env: tuple[CliRunner, Path, Path], tmp_path: Path) -> None:
    runner, store, src = env
    _run(runner, "model", "add", str(src), "--store", str(store))
    code, out, _ = _run(runner, "model", "prove", ADDR_HEX, "--tensor", "w0", "--word", "100", "--store", str(store))
    assert code == 0
    obj = json.loads(out)
    assert obj["address"] == ADDR_HEX and obj["tensor_name"] == "w0" and obj["word_index"] == 100
    proof = WordProof.from_json(obj)
    assert proof.word == BUNDLE.tensors[3].data[3200:3232]  # type: ignore[index]
    assert verify(BUNDLE.address, 3, 100, proof.word, proof)
    path = tmp_path / "proof.json"
    path.write_text(out)
    code, out, _ = _run(runner, "model", "verify-proof", str(path))
    assert code == 0 and out.strip() == "valid"
    other = "0x" + example_bundle([1]).address.hex()
    assert _run(runner, "model", "verify-proof", str(path), "--address", other)[0] == 4
    obj["word"] = "0x" + "00" * 32
    path.write_text(json.dumps(obj))
    assert _run(runner, "model", "verify-proof", str(path))[0] == 4
    code, out, _ = _run(runner, "model", "prove", ADDR_HEX, "--node", "0", "--store", str(store))
    assert code == 0 and json.loads(out)["kind"] == "node"
    r = runner.invoke(main, ["model", "verify-proof", "-"], input=out)
    assert r.exit_code == 0 and r.stdout.strip() == "valid"
    code, _, err = _run(runner, "model", "prove", ADDR_HEX, "--tensor", "w0", "--word", "999", "--store", str(store))
    assert code == 1 and "out of range" in err
    code, _, err = _run(runner, "model", "prove", ADDR_HEX, "--tensor", "nope", "--word", "0", "--store", str(store))
    assert code == 1 and "no tensor named" in err
    assert _run(runner, "model", "prove", ADDR_HEX, "--store", str(store))[0] == 2


def test_get_through_a_hub_process(env: tuple[CliRunner, Path, Path], tmp_path: Path) -> None:
    runner, store, src = env
    LocalStore(store).put(BUNDLE)
    dest = tmp_path / "via-hub.bundle"
    with hub_process(store) as url:
        code, out, _ = _run(runner, "model", "ls", "--store", url)
        assert code == 0 and out.split()[0] == ADDR_HEX
        code, _, _ = _run(runner, "model", "get", ADDR_HEX, "-o", str(dest), "--store", f"{tmp_path / 'c'},{url}")
        assert code == 0 and dest.read_bytes() == BUNDLE.encoded
        assert LocalStore(tmp_path / "c").list() == [BUNDLE.address]  # cached locally on the way
        code, _, err = _run(runner, "model", "add", str(src), "--store", url)
        assert code == 1 and "read-only" in err
