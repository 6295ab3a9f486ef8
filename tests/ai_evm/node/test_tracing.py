"""``debug_trace*`` (ai_evm/node/tracing.py, tracers.py) against anvil's answers, and ``aievm replay --tx``.

The same signed transactions (same key, chain id 31337, nonces, gas) run on an in-process node and
on anvil (``--steps-tracing``, so that it records struct logs): a plain contract (memory, hashing,
storage, a log, EXP), nested CALL/STATICCALL/DELEGATECALL with a callee that reverts with
``Error(string)``, and a top-level revert. The struct logs must agree step by step (pc, op, gas,
gasCost, depth, stack, memory, storage) and the callTracer frames field by field; the one field
where anvil is not geth is the top frame's ``gas``: geth gives the transaction's gas limit, anvil
the gas left after the intrinsic gas. An inference transaction's 0xa1 frame shows the model, the
input and output bytes and the gas of the record ``aievm_getInferences`` returns. Then limits,
named refusals of bad params, and ``aievm replay --tx HASH --rpc URL`` on a node process.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from eth_account import Account
from eth_utils import keccak, to_checksum_address

sys.path.insert(0, str(Path(__file__).resolve().parent))

from asm import creation  # noqa: E402
from nodeproc import DIGITS_BUNDLE, ROOT, NodeProcess  # noqa: E402
from tracing_twins import (  # noqa: E402
    FORWARDER,
    INLINE,
    KEY,
    NOPE,
    PLAIN,
    PRECOMPILE,
    REVERTER,
    SENDER,
    TRACE_METHODS,
    Twins,
    assert_struct_logs_equal,
    both,
    middle,
    rpc,
)

from ai_evm.cli import main as cli  # noqa: E402
from ai_evm.evm import encode_call, encode_inline_call  # noqa: E402
from ai_evm.node.chain import NodeConfig, Sequencer  # noqa: E402
from ai_evm.node.errors import InvalidParams, LimitExceeded, ServerError  # noqa: E402
from ai_evm.node.limits import RpcLimits  # noqa: E402
from ai_evm.node.methods import CALL_METHODS, METHODS, EthApi  # noqa: E402
from ai_evm.node.vm import make_resolver  # noqa: E402
from opml.bundle import load_bundle  # noqa: E402
from opml.engine import run_bytes  # noqa: E402


# -- struct logs -----------------------------------------------------------------------------------
def test_trace_methods_are_rpc_call_methods() -> None:
    assert set(TRACE_METHODS) <= METHODS and set(TRACE_METHODS) <= CALL_METHODS


def test_struct_logs_equal_anvils_for_a_plain_contract(twins: Twins) -> None:
    h = twins.send(to=twins.plain, data=(7).to_bytes(32, "big"))  # type: ignore[attr-defined]
    ours, theirs = both(twins, h, {"enableMemory": True})
    assert_struct_logs_equal(ours, theirs)
    ops = [s["op"] for s in ours["structLogs"]]
    assert {"KECCAK256", "SSTORE", "SLOAD", "EXP", "LOG0", "RETURN"} <= set(ops)
    sstore = ours["structLogs"][ops.index("SSTORE")]
    h7 = keccak((7).to_bytes(32, "big"))
    assert sstore["storage"] == {f"{1:064x}": h7.hex()}  # geth's format: no 0x
    assert ours["returnValue"] == "0x" + (7).to_bytes(32, "big").hex() + h7.hex()
    # the default: stack and storage on, memory off; the options switch them
    plain = twins.api.debug_traceTransaction(h)
    assert "memory" not in plain["structLogs"][5] and "stack" in plain["structLogs"][5]
    bare = twins.api.debug_traceTransaction(h, {"disableStack": True, "disableStorage": True,
                                                "enableReturnData": True})  # fmt: skip
    assert all("stack" not in s and "storage" not in s and s["returnData"] == "0x" for s in bare["structLogs"])
    assert [s["gasCost"] for s in bare["structLogs"]] == [s["gasCost"] for s in ours["structLogs"]]


def test_struct_logs_equal_anvils_for_a_deployment_and_nested_calls(twins: Twins) -> None:
    deploy = twins.send(data=creation(PLAIN))
    assert_struct_logs_equal(*both(twins, deploy, {"enableMemory": True}))
    nested = twins.send(to=twins.top, value=5)  # type: ignore[attr-defined]
    ours, theirs = both(twins, nested, {"enableMemory": True})
    assert_struct_logs_equal(ours, theirs)
    depths = {s["depth"] for s in ours["structLogs"]}
    assert depths == {1, 2, 3}
    assert [s["op"] for s in ours["structLogs"] if s["op"] in ("CALL", "STATICCALL", "DELEGATECALL")] == \
        ["CALL", "CALL", "STATICCALL", "DELEGATECALL"]  # fmt: skip


# -- callTracer ------------------------------------------------------------------------------------
def assert_frames_equal(ours: dict[str, Any], theirs: dict[str, Any], intrinsic: int) -> None:
    """Equal but for the top frame's gas (geth: the gas limit; anvil: less the intrinsic gas)."""
    assert int(ours["gas"], 16) - intrinsic == int(theirs["gas"], 16)
    assert {**ours, "gas": None} == {**theirs, "gas": None}


def intrinsic_gas(t: Twins, h: str) -> int:
    tx = t.api.eth_getTransactionByHash(h)
    assert tx is not None
    first = t.api.debug_traceTransaction(h, {"limit": 1})["structLogs"][0]
    return int(tx["gas"], 16) - int(first["gas"])


def test_call_frames_equal_anvils_for_nested_calls(twins: Twins) -> None:
    h = twins.send(to=twins.top, value=5, data=b"\x12\x34")  # type: ignore[attr-defined]
    ours, theirs = both(twins, h, {"tracer": "callTracer"})
    assert_frames_equal(ours, theirs, intrinsic_gas(twins, h))
    receipt = twins.api.eth_getTransactionReceipt(h)
    assert receipt is not None and ours["gasUsed"] == receipt["gasUsed"]
    assert ours["gas"] == hex(300_000)
    (mid,) = ours["calls"]
    assert (mid["type"], mid["value"], mid["output"]) == ("CALL", "0x5", "0x" + (42).to_bytes(32, "big").hex())
    reverted, static, delegate = mid["calls"]
    assert (reverted["type"], reverted["error"], reverted["revertReason"]) == ("CALL", "execution reverted", "nope")
    assert reverted["output"] == "0x" + NOPE.hex() and reverted["input"] == "0x00"
    assert static["type"] == "STATICCALL" and "value" not in static and "error" not in static
    assert delegate["type"] == "DELEGATECALL" and delegate["to"] == "0x" + twins.reverter.hex()  # type: ignore[attr-defined]
    only_top = twins.api.debug_traceTransaction(h, {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}})
    assert "calls" not in only_top and {**only_top, "calls": None} == {**ours, "calls": None}
    assert only_top == rpc(twins.anvil, "debug_traceTransaction", h,
                           {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}}) | {"gas": ours["gas"]}


def test_call_frames_equal_anvils_for_a_revert_and_a_deployment(twins: Twins) -> None:
    h = twins.send(to=twins.reverter, data=b"\x01")  # type: ignore[attr-defined]
    ours, theirs = both(twins, h, {"tracer": "callTracer"})
    assert_frames_equal(ours, theirs, intrinsic_gas(twins, h))
    assert (ours["error"], ours["revertReason"], ours["output"]) == ("execution reverted", "nope", "0x" + NOPE.hex())
    struct = twins.api.debug_traceTransaction(h)
    assert struct["failed"] is True and struct["returnValue"] == "0x" + NOPE.hex()
    deploy = twins.send(data=creation(REVERTER))
    ours, theirs = both(twins, deploy, {"tracer": "callTracer"})
    assert_frames_equal(ours, theirs, intrinsic_gas(twins, deploy))
    assert ours["type"] == "CREATE" and ours["output"] == "0x" + REVERTER.hex()


@pytest.mark.parametrize(("runtime", "error"), [
    ("fe", "invalid opcode: INVALID"),
    ("01", "stack underflow"),  # anvil: "StackUnderflow" (geth: "stack underflow (0 <=> 2)")
    ("600556", "invalid jump destination"),
    ("5b600056", "out of gas"),
    ("5b60016000fd", "execution reverted"),
])  # fmt: skip
def test_exceptional_halts_equal_anvils(twins: Twins, runtime: str, error: str) -> None:
    h = twins.send(to=twins.deploy(bytes.fromhex(runtime)), gas=100_000)
    assert_struct_logs_equal(*both(twins, h))
    ours, theirs = both(twins, h, {"tracer": "callTracer"})
    assert ours["error"] == error and ours["gasUsed"] == theirs["gasUsed"]
    if runtime != "01":
        assert_frames_equal(ours, theirs, intrinsic_gas(twins, h))
    last = twins.api.debug_traceTransaction(h)["structLogs"][-1]
    assert last.get("error") == (None if error == "execution reverted" else error)


def test_undefined_opcode_is_named_as_geth_names_it(twins: Twins) -> None:
    h = twins.send(anvil=False, to=twins.deploy(bytes.fromhex("5bef")), gas=100_000)  # anvil says "Unknown"
    last = twins.api.debug_traceTransaction(h)["structLogs"][-1]
    assert (last["op"], last["error"], last["gasCost"]) == \
        ("opcode 0xef not defined", "invalid opcode: opcode 0xef not defined", 0)  # fmt: skip


def test_refund_counter_equals_anvils(twins: Twins) -> None:
    """The transaction's refund counter per step: a slot set and cleared here, in a child that
    succeeds, and in a child that reverts (its refund is dropped)."""
    set_clear = bytes.fromhex("6001600055" "6000600055")
    ok = twins.deploy(set_clear + b"\x00")
    reverts = twins.deploy(set_clear + bytes.fromhex("60006000fd"))
    parent = twins.deploy(set_clear + bytes.fromhex("6000600060006000600073") + ok + bytes.fromhex("5af150")
                          + bytes.fromhex("6000600060006000600073") + reverts + bytes.fromhex("5af150" "00"))
    h = twins.send(to=parent)
    ours, theirs = both(twins, h)
    assert_struct_logs_equal(ours, theirs)
    logs = ours["structLogs"]
    assert max(s.get("refund", 0) for s in logs) == 3 * 19_900  # the parent's and the failing child's
    assert logs[-1]["refund"] == 2 * 19_900  # the reverted child's refund is gone
    inside = [s.get("refund", 0) for s in logs if s["depth"] == 2]
    assert inside[0] == 19_900 and inside[-1] == 3 * 19_900  # the transaction's counter, as geth has it


def test_precompile_call_equals_anvils(twins: Twins) -> None:
    """A STATICCALL of sha256 (0x02): the step's gasCost and the precompile's frame."""
    sha = twins.deploy(bytes.fromhex("602a600052" "602060206020600060025afa50" "60206020f3"))
    h = twins.send(to=sha)
    assert_struct_logs_equal(*both(twins, h, {"enableMemory": True}))
    ours, theirs = both(twins, h, {"tracer": "callTracer"})
    assert_frames_equal(ours, theirs, intrinsic_gas(twins, h))
    assert ours["calls"][0]["to"] == "0x" + "00" * 19 + "02"
    assert ours["output"] == "0x" + hashlib.sha256((42).to_bytes(32, "big")).hexdigest()


def test_create_frames_equal_anvils(twins: Twins) -> None:
    """CREATE2 of a contract, then a CREATE whose init code reverts (geth drops its ``to``)."""
    init = creation(b"\x00")
    reverting = bytes.fromhex("60006000fd")
    factory = twins.deploy(b"\x6b" + init + bytes.fromhex("600052" "6001600c60146000f550")
                           + b"\x64" + reverting + bytes.fromhex("600052" "6005601b6000f050" "00"))  # fmt: skip
    h = twins.send(to=factory)
    assert_struct_logs_equal(*both(twins, h, {"enableMemory": True}))
    ours, theirs = both(twins, h, {"tracer": "callTracer"})
    assert_frames_equal(ours, theirs, intrinsic_gas(twins, h))
    made, failed = ours["calls"]
    assert (made["type"], made["input"], made["output"]) == ("CREATE2", "0x" + init.hex(), "0x00")
    assert failed["type"] == "CREATE" and failed["error"] == "execution reverted" and "to" not in failed


def test_call_frames_with_logs_equal_anvils(twins: Twins) -> None:
    """``withLog``: each frame's logs with their position among its calls; none in a failed frame."""
    log_and_revert = twins.deploy(bytes.fromhex("60006000a0" "60006000fd"))
    multi = twins.deploy(bytes.fromhex("6007600060" "00a1" "6000600060206000600073") + twins.plain  # type: ignore[attr-defined]
                         + bytes.fromhex("5af150" "60006000a0" "60006000600060006000" "73") + log_and_revert
                         + bytes.fromhex("5af150" "60206000a0" "00"))  # fmt: skip
    h = twins.send(to=multi)
    config = {"tracer": "callTracer", "tracerConfig": {"withLog": True}}
    ours, theirs = both(twins, h, config)
    assert_frames_equal(ours, theirs, intrinsic_gas(twins, h))
    assert [log["position"] for log in ours["logs"]] == ["0x0", "0x1", "0x2"]
    assert ours["logs"][0]["topics"] == ["0x" + (7).to_bytes(32, "big").hex()]
    assert len(ours["calls"][0]["logs"]) == 1 and "logs" not in ours["calls"][1]
    receipt = twins.api.eth_getTransactionReceipt(h)
    assert receipt is not None and len(receipt["logs"]) == 4


def test_trace_block_by_number_and_hash(twins: Twins) -> None:
    raws = [twins.sign(to=twins.plain, data=(9).to_bytes(32, "big")),  # type: ignore[attr-defined]
            twins.sign(to=twins.top, value=1)]  # type: ignore[attr-defined]
    twins.api.defer_mining = True  # both in one block, as a batch request mines them
    hashes = [twins.api.eth_sendRawTransaction(r) for r in raws]
    twins.api.flush()
    twins.api.defer_mining = False
    for raw in raws:  # anvil too, so that nonces stay the same on both chains
        twins.mined_on_anvil(rpc(twins.anvil, "eth_sendRawTransaction", raw))
    receipt = twins.api.eth_getTransactionReceipt(hashes[1])
    assert receipt is not None
    number, block_hash = receipt["blockNumber"], receipt["blockHash"]
    assert twins.api.eth_getTransactionReceipt(hashes[0])["blockNumber"] == number  # type: ignore[index]
    for config in (None, {"tracer": "callTracer"}):
        by_number = twins.api.debug_traceBlockByNumber(number, config)
        assert [r["txHash"] for r in by_number] == hashes
        assert [r["result"] for r in by_number] == [twins.api.debug_traceTransaction(h, config) for h in hashes]
        assert twins.api.debug_traceBlockByHash(block_hash, config) == by_number
    # the re-execution reproduces the block: each transaction's gas equals its receipt's
    gas = [r["result"]["gas"] for r in twins.api.debug_traceBlockByNumber(number)]
    assert gas == [int(twins.api.eth_getTransactionReceipt(h)["gasUsed"], 16) for h in hashes]  # type: ignore[index]
    assert twins.api.debug_traceBlockByNumber("latest", {"tracer": "callTracer"})[0]["txHash"] == hashes[0]


# -- inference frames ------------------------------------------------------------------------------
def test_inference_frame_shows_model_input_output_and_gas(twins: Twins) -> None:
    x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")[:2].astype("<f4").tobytes()
    expected = run_bytes(load_bundle(str(DIGITS_BUNDLE)), x)
    call = encode_call(twins.model, len(expected), x)
    h = twins.send(anvil=False, to=twins.forwarder, data=call, gas=2_000_000)  # type: ignore[attr-defined]
    (record,) = twins.api.aievm_getInferences(h)  # type: ignore[misc]
    frame = twins.api.debug_traceTransaction(h, {"tracer": "callTracer"})
    assert "error" not in frame and frame["output"] == "0x" + (len(expected).to_bytes(32, "big") + expected).hex()
    (inner,) = frame["calls"]
    assert inner["to"] == "0x" + PRECOMPILE.hex() and inner["type"] == "CALL"
    assert inner["inference"] == {"precompile": "0xa1", "model": record["model"], "input": record["input"],
                                  "output": record["output"], "gas": hex(record["gas"]), "callIndex": 0}
    assert record["input"] == "0x" + x.hex() and record["output"] == "0x" + expected.hex()
    assert int(inner["gasUsed"], 16) == record["gas"]
    # the struct logger has no steps inside the precompile; its CALL costs what the frame was given
    logs = twins.api.debug_traceTransaction(h)["structLogs"]
    assert {s["depth"] for s in logs} == {1}
    # the same call, traced without mining it
    traced = twins.api.debug_traceCall({"from": SENDER, "to": "0x" + twins.forwarder.hex(),  # type: ignore[attr-defined]
                                        "data": "0x" + call.hex(), "gas": hex(2_000_000)}, "latest",
                                       {"tracer": "callTracer"})  # fmt: skip
    assert traced["calls"][0]["inference"] == inner["inference"]
    # a failed inference (wrong output size) names its reason in the frame
    bad = twins.api.debug_traceCall({"from": SENDER, "to": "0x" + PRECOMPILE.hex(), "gas": hex(2_000_000),
                                     "data": "0x" + encode_call(twins.model, 7, x).hex()}, "latest",
                                    {"tracer": "callTracer"})  # fmt: skip
    assert bad["inference"]["model"] == "0x" + twins.model.hex() and "outputSize" in bad["inference"]["error"]
    assert "output" not in bad["inference"]
    # 0xa0, the bundle inline: the frame names the model the bundle is
    inline = encode_inline_call(DIGITS_BUNDLE.read_bytes(), x)
    frame = twins.api.debug_traceCall({"from": SENDER, "to": "0x" + twins.forwarder.hex(), "gas": hex(5_000_000),  # type: ignore[attr-defined]
                                       "data": "0x" + encode_call(b"\0" * 32, 0, b"").hex()}, "latest",
                                      {"tracer": "callTracer"})  # fmt: skip
    assert "error" in frame["calls"][0]["inference"]  # the zero model: named as the call gave it
    top_inline = twins.api.debug_traceCall({"from": SENDER, "to": "0x" + INLINE.hex(), "gas": hex(5_000_000),
                                            "data": "0x" + inline.hex()}, "latest", {"tracer": "callTracer"})
    got = top_inline["inference"]
    assert (got["precompile"], got["model"], got["input"], got["output"]) == \
        ("0xa0", "0x" + twins.model.hex(), "0x" + x.hex(), "0x" + expected.hex())  # fmt: skip
    assert int(got["gas"], 16) <= int(top_inline["gasUsed"], 16)


def test_inference_call_indexes_follow_the_records(twins: Twins) -> None:
    """Three 0xa1 calls in one transaction, the middle one failing (one input byte short): the
    frames' callIndex numbers the successful ones as aievm_getInferences does."""
    whole = "6000600036" "6000600060a15af150"  # CALL 0xa1 with all the calldata, POP
    short = "60006000600136036000600060a15af150"  # the same with CALLDATASIZE - 1 bytes
    thrice = twins.deploy(bytes.fromhex("366000600037" + whole + short + whole + "00"))
    x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")[:1].astype("<f4").tobytes()
    expected = run_bytes(load_bundle(str(DIGITS_BUNDLE)), x)
    h = twins.send(anvil=False, to=thrice, data=encode_call(twins.model, len(expected), x), gas=3_000_000)
    records = twins.api.aievm_getInferences(h)
    assert records is not None and [r["callIndex"] for r in records] == [0, 1]
    frames = twins.api.debug_traceTransaction(h, {"tracer": "callTracer"})["calls"]
    assert [f["inference"].get("callIndex") for f in frames] == [0, None, 1]
    assert "wrong input length" in frames[1]["inference"]["error"] and frames[1]["error"]
    assert [f["inference"]["output"] for f in (frames[0], frames[2])] == [r["output"] for r in records]


def test_trace_call_with_state_overrides(twins: Twins) -> None:
    to = "0x" + twins.plain.hex()  # type: ignore[attr-defined]
    overrides = {to: {"code": "0x" + REVERTER.hex()}}
    out = twins.api.debug_traceCall({"from": SENDER, "to": to}, "latest",
                                    {"tracer": "callTracer", "stateOverrides": overrides})  # fmt: skip
    assert out["output"] == "0x" + (42).to_bytes(32, "big").hex()
    logs = twins.api.debug_traceCall({"from": SENDER, "to": to, "data": "0x" + (3).to_bytes(32, "big").hex()})
    assert logs["failed"] is False and logs["structLogs"][0]["op"] == "PUSH1"


# -- limits and bad params -------------------------------------------------------------------------
def test_limits(twins: Twins) -> None:
    h = twins.send(to=twins.top, value=1)  # type: ignore[attr-defined]
    full = twins.api.debug_traceTransaction(h, {"enableMemory": True})["structLogs"]
    assert twins.api.debug_traceTransaction(h, {"limit": 5})["structLogs"] == \
        twins.api.debug_traceTransaction(h)["structLogs"][:5]  # fmt: skip
    small = EthApi(twins.seq, limits=RpcLimits(batch_response_max=len(json.dumps(full)) // 4))
    with pytest.raises(LimitExceeded, match="response size limit"):
        small.debug_traceTransaction(h, {"enableMemory": True})
    assert small.debug_traceTransaction(h, {"tracer": "callTracer"})["type"] == "CALL"
    from ai_evm.node.tracers import TraceBudget

    few = TraceBudget(10, 0)
    with pytest.raises(LimitExceeded, match="10 struct logs"):
        for _ in range(11):
            few.spend(1)
    loop = twins.deploy(bytes.fromhex("5b600056"))  # JUMPDEST PUSH1 0 JUMP: runs until out of gas
    slow = EthApi(twins.seq, limits=RpcLimits(evm_timeout=0.2))
    with pytest.raises(ServerError, match="execution aborted"):
        slow.debug_traceCall({"to": "0x" + loop.hex(), "gas": hex(40_000_000)}, "latest", {"tracer": "callTracer"})
    with pytest.raises(ServerError, match="execution aborted"):
        twins.api.debug_traceCall({"to": "0x" + loop.hex(), "gas": hex(40_000_000)}, "latest",
                                  {"tracer": "callTracer", "timeout": "100ms"})  # fmt: skip


@pytest.mark.parametrize(("args", "error", "match"), [
    (["0x12"], InvalidParams, "hash"),
    (["0x" + "00" * 32], ServerError, "not found"),
    (["H", {"tracer": "prestateTracer"}], InvalidParams, "prestateTracer"),
    (["H", "callTracer"], InvalidParams, "expected an object"),
    (["H", {"tracer": "callTracer", "tracerConfig": {"onlyTop": True}}], InvalidParams, "onlyTop"),
    (["H", {"tracer": "callTracer", "tracerConfig": {"withLog": 1}}], InvalidParams, "withLog"),
    (["H", {"tracerConfig": {"onlyTopCall": True}}], InvalidParams, "struct logger"),
    (["H", {"disableStack": "yes"}], InvalidParams, "disableStack"),
    (["H", {"timeout": "5 seconds"}], InvalidParams, "Go duration"),
    (["H", {"limit": -1}], InvalidParams, "limit"),
    (["H", {"stateOverrides": {}}], InvalidParams, "stateOverrides"),
    (["H", {"enableMemroy": True}], InvalidParams, "enableMemroy"),
])  # fmt: skip
def test_bad_params_are_named(twins: Twins, args: list[Any], error: type[Exception], match: str) -> None:
    h = twins.send(to=twins.plain)  # type: ignore[attr-defined]
    with pytest.raises(error, match=match):
        twins.api.debug_traceTransaction(*[h if a == "H" else a for a in args])


def test_bad_block_and_call_params(twins: Twins) -> None:
    with pytest.raises(ServerError, match="not found"):
        twins.api.debug_traceBlockByNumber("0xffffff")
    with pytest.raises(ServerError, match="not found"):
        twins.api.debug_traceBlockByHash("0x" + "ab" * 32)
    with pytest.raises(ServerError, match="genesis"):
        twins.api.debug_traceBlockByNumber("0x0")
    with pytest.raises(InvalidParams):
        twins.api.debug_traceBlockByHash("latest")
    with pytest.raises(InvalidParams, match="blockOverrides"):
        twins.api.debug_traceCall({"to": SENDER}, "latest", {"blockOverrides": {"number": "0x1"}})
    with pytest.raises(InvalidParams):
        twins.api.debug_traceCall("0x00", "latest")


# -- over HTTP, and aievm replay --tx --------------------------------------------------------------
def test_replay_tx_on_a_node_process(node: NodeProcess) -> None:
    x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")[:1].astype("<f4").tobytes()
    model = bytes.fromhex(node.model[2:])  # type: ignore[attr-defined]
    expected = run_bytes(load_bundle(str(DIGITS_BUNDLE)), x)
    sender = node.rpc("eth_accounts")[0]
    deploy = node.rpc("eth_sendTransaction", {"from": sender, "data": "0x" + creation(FORWARDER).hex()})
    forwarder = node.rpc("eth_getTransactionReceipt", deploy)["contractAddress"]
    h = node.rpc("eth_sendTransaction", {"from": sender, "to": forwarder, "gas": hex(2_000_000),
                                         "data": "0x" + encode_call(model, len(expected), x).hex()})  # fmt: skip
    frame = node.rpc("debug_traceTransaction", h, {"tracer": "callTracer"})
    assert frame["calls"][0]["inference"]["output"] == "0x" + expected.hex()
    # web3.py's own debug API parses both tracers' answers
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(node.url))
    call_trace = w3.geth.debug.trace_transaction(h, {"tracer": "callTracer"})
    assert call_trace["gasUsed"] == int(frame["gasUsed"], 16) and len(call_trace["calls"]) == 1
    assert call_trace["calls"][0]["inference"]["model"] == node.model  # type: ignore[attr-defined]
    struct = w3.geth.debug.trace_transaction(h, {})
    assert struct["structLogs"][0]["op"] == "CALLDATASIZE" and struct["failed"] is False
    assert node.rpc("debug_traceBlockByHash", node.rpc("eth_getTransactionReceipt", h)["blockHash"])[0]["txHash"] == h

    runner = CliRunner()
    store = str(node.datadir / "models")
    encoder = str(ROOT / "models" / "encoder" / "model.bundle")
    page = node.datadir.parent / "replay.html"
    out = runner.invoke(cli, ["replay", "--tx", h, "--rpc", node.url, "--store", store, "--html", str(page)])
    assert out.exit_code == 0, out.output
    assert "1 inference" in out.output and "output equals the chain's" in out.output
    assert f"called by {forwarder.lower()} ({sender.lower()} > {forwarder.lower()})" in out.output
    assert "output equals the chain" in page.read_text()
    assert node.model in out.output and "VM steps" in out.output  # type: ignore[attr-defined]
    steps = runner.invoke(cli, ["replay", "--tx", h, "--rpc", node.url, "--bundle", str(DIGITS_BUNDLE),
                                "--node", "0", "--step", "1"])  # fmt: skip
    assert steps.exit_code == 0, steps.output
    assert "node 0: VM steps" in steps.output and "witness" in steps.output
    # refusals
    none = runner.invoke(cli, ["replay", "--tx", deploy, "--rpc", node.url])
    assert none.exit_code == 0 and "ran no inference" in none.output
    for args, needle in [
        (["--tx", h], "--rpc"),
        (["--tx", "0x12", "--rpc", node.url], "not a transaction hash"),
        (["--tx", "0x" + "00" * 32, "--rpc", node.url], "not mined"),
        (["--tx", h, "--rpc", node.url, "--index", "3", "--store", store], "1 inferences"),
        (["--tx", h, "--rpc", node.url, "--store", str(node.datadir / "empty")], "is not in"),
        (["--tx", h, "--rpc", node.url, "--bundle", encoder], "but the inference"),
        (["--tx", h, "--rpc", "http://127.0.0.1:1"], "failed"),
    ]:  # fmt: skip
        bad = runner.invoke(cli, ["replay", *args])
        assert bad.exit_code != 0 and needle in bad.output, (args, bad.output)


def test_cast_agrees_with_the_call_tracer(node: NodeProcess) -> None:
    """``cast run`` (foundry re-executes the transaction in revm from the node's state) shows the
    same frames and gas as this node's callTracer; ``cast rpc`` and ethers read the trace itself."""
    import re
    import subprocess

    cast = str(ROOT / "node_modules" / ".bin" / "cast")
    sender = node.rpc("eth_accounts")[0]

    def deploy(runtime: bytes) -> bytes:
        h = node.rpc("eth_sendTransaction", {"from": sender, "data": "0x" + creation(runtime).hex()})
        return bytes.fromhex(node.rpc("eth_getTransactionReceipt", h)["contractAddress"][2:])

    mid = deploy(middle(deploy(REVERTER)))
    h = node.rpc("eth_sendTransaction", {"from": sender, "to": "0x" + mid.hex(), "gas": hex(200_000)})
    frame = node.rpc("debug_traceTransaction", h, {"tracer": "callTracer"})
    run = subprocess.run([cast, "run", h, "--rpc-url", node.url], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    shown = [int(g) for g in re.findall(r"\[(\d+)\] 0x", run.stdout)]
    intrinsic = int(frame["gasUsed"], 16) - shown[0]
    assert intrinsic == 21_000
    assert shown[1:] == [int(c["gasUsed"], 16) for c in frame["calls"]]
    assert "[Revert] nope" in run.stdout and "[staticcall]" in run.stdout and "[delegatecall]" in run.stdout
    raw = subprocess.run([cast, "rpc", "debug_traceTransaction", json.dumps([h, {"tracer": "callTracer"}]), "--raw",
                          "--rpc-url", node.url], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout) == frame
    # ethers v6: provider.send
    script = ("import { JsonRpcProvider } from 'ethers';"
              f"const p = new JsonRpcProvider('{node.url}');"
              f"const t = await p.send('debug_traceTransaction', ['{h}', {{tracer: 'callTracer'}}]);"
              "console.log(JSON.stringify(t));")
    ethers = subprocess.run(["node", "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert ethers.returncode == 0, ethers.stderr
    assert json.loads(ethers.stdout) == frame


def test_any_params_give_an_answer_or_a_named_error(twins: Twins) -> None:
    """Random params (hypothesis) for each trace method: a result or a NodeError, never anything else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ai_evm.node.errors import NodeError

    h = twins.send(to=twins.top, value=1)  # type: ignore[attr-defined]
    number = twins.api.eth_getTransactionReceipt(h)["blockNumber"]  # type: ignore[index]
    keys = st.sampled_from(["tracer", "tracerConfig", "disableStack", "disableStorage", "enableMemory",
                            "enableReturnData", "limit", "timeout", "onlyTopCall", "withLog", "stateOverrides",
                            "from", "to", "data", "gas", "value"])  # fmt: skip
    leaves = (st.none() | st.booleans() | st.integers(-5, 2**70) | st.sampled_from([h, number, "callTracer", "1ms",
              "latest", "0x" + twins.top.hex(), "0x0"]) | st.text(max_size=8))  # type: ignore[attr-defined]
    values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
                          max_leaves=10)  # fmt: skip

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(TRACE_METHODS), params=st.lists(values, min_size=1, max_size=3))
    def check(method: str, params: list[Any]) -> None:
        if method != "debug_traceCall":
            params = params[:2]
        try:
            json.dumps(getattr(twins.api, method)(*params))
        except NodeError:
            pass

    check()


def test_blocks_with_deposits_replay_as_mined(tmp_path: Path) -> None:
    """A rollup block opens with deposits (0x7E: minted, no fee, some failing before their call
    runs): traced, every transaction's gas equals its receipt's and the deposit's frame is its call."""
    from eth_abi import encode as abi_encode

    from ai_evm.evm.deposit import deposit_source_hash, new_deposit
    from ai_evm.node.chain import L1Origin
    from ai_evm.rollup.predeploys import L2_TO_L1_MESSAGE_PASSER

    portal, alice, bob = b"\x5f" * 20, b"\xaa" * 20, b"\xbb" * 20
    seq = Sequencer(NodeConfig(tmp_path / "rollup", sync=False), make_resolver(None))
    api = EthApi(seq)
    withdraw = keccak(b"initiateWithdrawal(address,uint256,bytes)")[:4] + \
        abi_encode(["address", "uint256", "bytes"], ["0x" + bob.hex(), 100_000, b"hi"])  # fmt: skip
    deposits = [new_deposit(deposit_source_hash(portal, 0), alice, L2_TO_L1_MESSAGE_PASSER, 10**18, 10**17, 200_000,
                            withdraw),
                 new_deposit(deposit_source_hash(portal, 1), alice, bob, 7, 10**30, 50_000, b""),  # value too high
                 new_deposit(deposit_source_hash(portal, 2), alice, L2_TO_L1_MESSAGE_PASSER, 5, 0, 60_000,
                             b"\xde\xad\xbe\xef")]  # no such function: reverts  # fmt: skip
    head = seq.head()
    seq.origin_for = lambda parent, ts: L1Origin(int(head.block_number) + 1, bytes([7]) * 32, 0)
    seq.deposits_for = lambda parent, origin: list(deposits) if parent == head else []  # type: ignore[arg-type]
    user = Account.sign_transaction({"to": to_checksum_address(bob), "value": 1, "gas": 21_000, "nonce": 0,
                                     "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "chainId": 31337,
                                     "type": 2}, KEY).raw_transaction  # fmt: skip
    assert seq.submit([seq.decode_raw(bytes(user))]) == [None]
    (mined,) = seq.mine_pending(allow_empty=True)
    record = seq.record(mined.number)
    assert record is not None and len(record["txs"]) == 4
    gas_used = [int(r["gasUsed"], 16) for r in record["receipts"]]
    structs = api.debug_traceBlockByNumber(hex(mined.number))
    assert [r["result"]["gas"] for r in structs] == gas_used
    assert [r["result"]["failed"] for r in structs] == [False, True, True, False]
    frames = [r["result"] for r in api.debug_traceBlockByNumber(hex(mined.number), {"tracer": "callTracer"})]
    assert [f["gasUsed"] for f in frames] == [hex(g) for g in gas_used]
    assert frames[0]["from"] == "0x" + alice.hex() and frames[0]["to"] == "0x" + L2_TO_L1_MESSAGE_PASSER.hex()
    assert frames[0]["value"] == hex(10**17) and "error" not in frames[0]
    assert frames[1]["error"].startswith("deposit value") and frames[2]["error"] == "execution reverted"
    seq.close()
