"""``aievm replay`` and ``aievm trace``: step through an inference the way the dispute game sees it.

``aievm trace BUNDLE --input X.npy -o trace.json`` saves an execution: the model address, the
input roots, and per graph node its phase-1 state, output commitment, VM step count and output
bytes. ``aievm replay BUNDLE --input X.npy`` prints the node table (op, shapes, output commitment,
MACs, VM steps); ``--node K`` adds node ``K``'s instructions (operands and results; ``--step S``
centres the window on step ``S`` and shows its witness); ``--against OTHER.json`` finds the first
node and VM step where the other execution diverges; ``--html FILE`` saves the same as a page.

``aievm replay --tx HASH --rpc URL`` starts from a transaction instead: it reads the transaction's
inference records from the node (``aievm_getInferences``: model, input and output bytes, gas),
checks the bytes against the record's hashes, names the contract that called each one (the
node's callTracer), resolves each model (the BUNDLE argument or
``--bundle``, else ``--store``, else the local model store), re-runs the engine to compare the
output with the chain's, and replays each inference (``--index K``: only record ``K``) as above.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import main

TRACE_FORMAT = "aievm-trace/1"
WINDOW = 12


def _load_inputs(bundle: Any, paths: tuple[str, ...], sample: int | None) -> list[np.ndarray]:
    arrays = []
    for p in paths:
        try:
            arrays.append(np.load(p, allow_pickle=False))
        except (OSError, ValueError, EOFError) as e:
            raise click.BadParameter(f"cannot read {p}: {e}", param_hint="--input") from None
    if sample is not None:
        try:
            arrays = [a[sample : sample + 1] for a in arrays]
            if any(a.shape[0] != 1 for a in arrays):
                raise IndexError
        except IndexError:
            raise click.BadParameter(f"sample {sample} is not in the input", param_hint="--sample") from None
    if len(arrays) != len(bundle.inputs):
        raise click.BadParameter(f"the model takes {len(bundle.inputs)} inputs, got {len(arrays)}",
                                 param_hint="--input")
    return arrays


def _load_bundle(path: str) -> Any:
    from opml.bundle import load_bundle
    from opml.errors import OpmlError

    try:
        return load_bundle(path)
    except (OpmlError, OSError) as e:
        raise click.ClickException(f"cannot load bundle {path}: {e}") from None


def _execute(bundle: Any, inputs: list[np.ndarray]) -> dict[str, Any]:
    """Every intermediate tensor, its root and the phase-1 states (raises click errors)."""
    from fraud_vm import phase1 as p1
    from fraud_vm.tensors import commit_tensor
    from opml.errors import OpmlError

    try:
        env = p1.intermediate_tensors(bundle, inputs)
    except OpmlError as e:
        raise click.ClickException(f"the input does not fit the model: {e}") from None
    trace = p1.build_phase1(bundle, p1.commit_env(bundle, env, commit_tensor))
    batch = next((a.shape[0] // -s.shape[0] for a, s in zip(inputs, bundle.input_specs(), strict=True)
                  if s.shape and s.shape[0] < 0), 1)
    return {"env": env, "trace": trace, "batch": int(batch)}


def _node_steps(bundle: Any, k: int, batch: int) -> int:
    from fraud_vm.compiler import compile_context, context_for

    return int(compile_context(context_for(bundle, k, batch)).num_steps)


def _node_macs(bundle: Any, node: Any, batch: int) -> int:
    """MACs of one node (``opml.cost.node_cost``)."""
    from opml.cost import node_cost

    return node_cost(bundle, node, batch).macs


def trace_document(bundle: Any, run: dict[str, Any]) -> dict[str, Any]:
    """The JSON document ``aievm trace`` writes."""
    tr, env, batch = run["trace"], run["env"], run["batch"]
    nodes = []
    for k, node in enumerate(bundle.nodes):
        y = np.ascontiguousarray(env[node.outputs[0]])
        nodes.append({
            "index": k, "op": node.op, "name": node.name, "output_root": "0x" + tr.roots[node.outputs[0]].hex(),
            "state": "0x" + tr.state(k + 1).hex(), "num_steps": _node_steps(bundle, k, batch),
            "dtype": y.dtype.name, "shape": list(y.shape),
            "data": base64.b64encode(y.astype(y.dtype.newbyteorder("<")).tobytes()).decode(),
        })
    return {"format": TRACE_FORMAT, "model_address": bundle.address_hex, "batch": batch,
            "input_roots": ["0x" + r.hex() for r in tr.input_roots()], "initial_state": "0x" + tr.state(0).hex(),
            "nodes": nodes}


def load_trace(path: str, bundle: Any) -> dict[str, Any]:
    """Read and check a trace file against ``bundle`` (click errors for anything malformed)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"cannot read {path}: {e}", param_hint="--against") from None
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"{path} is not JSON: {e}", param_hint="--against") from None
    try:
        if doc["format"] != TRACE_FORMAT:
            raise ValueError(f"format is {doc['format']!r}, expected {TRACE_FORMAT!r}")
        if doc["model_address"] != bundle.address_hex:
            raise ValueError(f"it is a trace of model {doc['model_address']}, not {bundle.address_hex}")
        if len(doc["nodes"]) != len(bundle.nodes):
            raise ValueError(f"it has {len(doc['nodes'])} nodes, the model {len(bundle.nodes)}")
        nodes: list[dict[str, Any]] = []
        out = {"batch": int(doc["batch"]), "initial_state": bytes.fromhex(doc["initial_state"][2:]), "nodes": nodes}
        for k, nd in enumerate(doc["nodes"]):
            if int(nd["index"]) != k:
                raise ValueError(f"node entry {k} has index {nd['index']}")
            dt = np.dtype(nd["dtype"])
            data = np.frombuffer(base64.b64decode(nd["data"], validate=True), dtype=dt.newbyteorder("<"))
            y = data.astype(dt).reshape([int(d) for d in nd["shape"]])
            nodes.append({"state": bytes.fromhex(nd["state"][2:]), "y": y,
                                 "root": bytes.fromhex(nd["output_root"][2:])})
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise click.BadParameter(f"{path} is not a usable trace: {e}", param_hint="--against") from None
    return out


def _short(b: bytes) -> str:
    return "0x" + b.hex()[:16] + "…"


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _node_table(bundle: Any, run: dict[str, Any], mark: int | None) -> Any:
    from rich.table import Table

    env, tr, batch = run["env"], run["trace"], run["batch"]
    table = Table(title=f"model {bundle.address_hex}  ({len(bundle.nodes)} nodes, batch {batch})")
    for col in ("node", "op", "inputs", "output", "output commitment", "MACs", "VM steps"):
        table.add_column(col, justify="right" if col in ("node", "MACs", "VM steps") else "left")
    for k, node in enumerate(bundle.nodes):
        ins = ", ".join(_fmt_shape(env[i].shape if i in env else bundle.tensors[i].shape) for i in node.inputs)
        out = env[node.outputs[0]]
        style = "bold red" if k == mark else None
        table.add_row(str(k), node.op, ins, f"{out.dtype.name} {_fmt_shape(out.shape)}",
                      _short(tr.roots[node.outputs[0]]), f"{_node_macs(bundle, node, batch):,}",
                      f"{_node_steps(bundle, k, batch):,}", style=style)
    return table


def _values(trace: Any, ops: tuple[tuple[int, int], ...], limit: int = 4) -> str:
    """Operand values ``(region, element) -> value`` of the first lanes."""
    from fraud_vm.isa import PAD

    xs = [*trace.xs, trace.y]
    parts = []
    real = list(dict.fromkeys(o for o in ops if o != PAD))  # broadcast operands once
    for r, e in real[:limit]:
        v = xs[r].reshape(-1)[e] if 0 <= r < len(xs) and 0 <= e < xs[r].size else "?"
        parts.append(f"r{r}[{e}]={v}")
    more = len(real) - limit
    return ", ".join(parts) + (f" (+{more})" if more > 0 else "")


def _step_table(trace: Any, k_node: int, center: int | None) -> Any:
    from rich.table import Table

    n = trace.num_steps
    c = 0 if center is None else center
    lo = max(0, c - WINDOW // 2)
    hi = min(n, lo + WINDOW)
    table = Table(title=f"node {k_node}: VM steps {lo}..{hi - 1} of {n}")
    for col in ("step", "instruction", "operands a", "operands b", "imm", "result", "post-state"):
        table.add_column(col)
    for s in range(lo, hi):
        ins = trace.program.instr(s)
        post = trace.state_at(s + 1)
        before, after = trace.program.written_at(s), trace.program.written_at(s + 1)
        if isinstance(after, np.ndarray):
            newly = np.flatnonzero(after & ~np.asarray(before, dtype=bool))
        else:
            newly = np.arange(int(before), int(after))
        flat = trace.y.reshape(-1)
        if newly.size:
            result = "out " + ", ".join(f"[{i}]={flat[i]}" for i in newly[:4])
            result += f" (+{newly.size - 4})" if newly.size > 4 else ""
        else:
            result = "acc " + ", ".join(str(v) for v in post.acc[:4]) + " …"
        table.add_row(str(s), ins.kind.name, _values(trace, ins.a), _values(trace, ins.b),
                      ", ".join(str(v) for v in ins.imm[:6]), result, _short(post.hash()),
                      style="bold red" if s == center else None)
    return table


def _divergence(bundle: Any, run: dict[str, Any], other: dict[str, Any], console: Any) -> int | None:
    """Print the first diverging node and VM step; return the node (None: the executions agree)."""
    from fraud_vm.trace import NodeTrace

    tr = run["trace"]
    if other["batch"] != run["batch"]:
        console.print(f"[red]the executions differ in batch size ({run['batch']} vs {other['batch']})")
        return None
    if other["initial_state"] != tr.state(0):
        console.print("[red]the executions start from different inputs (phase-1 state 0 differs)")
        return None
    for k, nd in enumerate(other["nodes"]):
        if nd["state"] == tr.state(k + 1):
            continue
        node = bundle.nodes[k]
        mine = NodeTrace(bundle, k, run["env"])
        theirs = copy.copy(mine)  # same inputs (the states before node k agree), their output
        if nd["y"].shape != mine.y.shape or nd["y"].dtype != mine.y.dtype:
            console.print(f"first diverging node: {k} ({node.op}): output shape/dtype differ")
            return k
        theirs.y = np.ascontiguousarray(nd["y"])
        lo, hi = 0, mine.num_steps  # invariant: states agree at lo, differ at hi
        if mine.state_hash_at(hi) == theirs.state_hash_at(hi):
            console.print(f"first diverging node: {k} ({node.op}): outputs agree, the phase-1 state differs")
            return k
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if mine.state_hash_at(mid) == theirs.state_hash_at(mid):
                lo = mid
            else:
                hi = mid
        diff = np.flatnonzero(mine.y.reshape(-1) != theirs.y.reshape(-1))
        console.print(f"first diverging node: {k} ({node.op} {node.name!r}); first diverging VM step: {lo} "
                      f"(of {mine.num_steps}); {diff.size} output elements differ, first at flat index "
                      f"{int(diff[0]) if diff.size else '-'}")
        return k
    console.print("the executions agree on every node")
    return None


@main.command("trace")
@click.argument("bundle_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--input", "inputs", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help=".npy per model input, in declared order")
@click.option("--sample", type=int, help="use only this sample of the batch")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="trace file to write")
def trace_cmd(bundle_path: str, inputs: tuple[str, ...], sample: int | None, output: str) -> None:
    """Run a bundle and save the execution (phase-1 states, node outputs) for replay --against."""
    bundle = _load_bundle(bundle_path)
    run = _execute(bundle, _load_inputs(bundle, inputs, sample))
    doc = trace_document(bundle, run)
    Path(output).write_text(json.dumps(doc))
    click.echo(f"{len(bundle.nodes)} nodes, final state {doc['nodes'][-1]['state'] if doc['nodes'] else '-'}")


@main.command("replay")
@click.argument("bundle_path", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--input", "inputs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help=".npy per model input, in declared order")
@click.option("--sample", type=int, help="use only this sample of the batch")
@click.option("--node", "node_index", type=int, help="show this node's VM instructions")
@click.option("--step", type=int, help="centre the instruction window on this step (needs --node)")
@click.option("--against", type=click.Path(exists=True, dir_okay=False), help="trace file of another execution")
@click.option("--html", type=click.Path(dir_okay=False), help="also write the report as an HTML page")
@click.option("--game", help="replay a dispute game on L1 by its address instead (needs --l1; the bundle optional)")
@click.option("--l1", "l1_url", help="L1 JSON-RPC URL (with --game)")
@click.option("--bundle", "game_bundle", type=click.Path(exists=True, dir_okay=False),
              help="with --game: the model bundle, to name the pinned node; with --tx: the model bundle")
@click.option("--tx", "tx_hash", help="replay the inferences of this L2 transaction instead (needs --rpc)")
@click.option("--rpc", "rpc_url", help="L2 node JSON-RPC URL (with --tx)")
@click.option("--store", "store_uri", help="with --tx: model store to resolve the models from (path, http(s)://, "
              "s3://; default: the local store)")
@click.option("--index", "record_index", type=int, help="with --tx: replay only the transaction's inference K")
def replay_cmd(bundle_path: str | None, inputs: tuple[str, ...], sample: int | None, node_index: int | None,
               step: int | None, against: str | None, html: str | None, game: str | None, l1_url: str | None,
               game_bundle: str | None, tx_hash: str | None, rpc_url: str | None, store_uri: str | None,
               record_index: int | None) -> None:
    """Replay an inference node by node and VM step by step (the auditor's view of a dispute).

    With --tx HASH --rpc URL: replay every inference the L2 transaction ran (its records from the
    node: model, input and output bytes), after checking the output against a local re-run.

    With --game ADDRESS --l1 URL: replay a dispute game from L1 move by move (player, position,
    claim, bond, gas), the pinned instruction and its re-execution with fraud_vm, and the outcome.
    """
    from rich.console import Console

    if game is not None:
        _replay_game(game, l1_url, game_bundle or bundle_path)
        return
    console = Console(record=True, width=160)
    if tx_hash is not None:
        if inputs or sample is not None:
            raise click.UsageError("--tx takes the inputs from the chain: leave out --input and --sample")
        if against is not None:
            raise click.UsageError("--against compares two executions of one inference; use it with BUNDLE --input")
        if step is not None and node_index is None:
            raise click.BadParameter("--step needs --node", param_hint="--step")
        _replay_tx(tx_hash, rpc_url, bundle_path or game_bundle, store_uri, record_index, node_index, step, console)
        _save_html(console, html)
        return
    if bundle_path is None or not inputs:
        raise click.UsageError("replay needs BUNDLE and --input (or --tx HASH --rpc URL, or --game ADDRESS --l1 URL)")
    bundle = _load_bundle(bundle_path)
    if step is not None and node_index is None and against is None:
        raise click.BadParameter("--step needs --node", param_hint="--step")
    other = load_trace(against, bundle) if against else None
    _replay_inference(bundle, _load_inputs(bundle, inputs, sample), node_index, step, other, console)
    _save_html(console, html)


def _save_html(console: Any, html: str | None) -> None:
    if html:
        try:
            console.save_html(html)
        except OSError as e:
            raise click.ClickException(f"cannot write {html}: {e}") from None


def _replay_inference(bundle: Any, inputs: list[np.ndarray], node_index: int | None, step: int | None,
                      other: dict[str, Any] | None, console: Any) -> None:
    """The node table of one inference, with node ``node_index``'s VM steps (centred on ``step``)."""
    from fraud_vm.phase1 import io_hash
    from fraud_vm.trace import NodeTrace

    n = len(bundle.nodes)
    if node_index is not None and not 0 <= node_index < n:
        raise click.BadParameter(f"node {node_index} is outside 0..{n - 1}", param_hint="--node")
    run = _execute(bundle, inputs)
    tr = run["trace"]
    console.print(f"input hash 0x{io_hash(tr.input_roots()).hex()}  output hash 0x{io_hash(tr.output_roots()).hex()}")
    diverging = _divergence(bundle, run, other, console) if other is not None else None
    console.print(_node_table(bundle, run, diverging if node_index is None else node_index))
    if node_index is not None:
        trace = NodeTrace(bundle, node_index, run["env"])
        if step is not None and not 0 <= step < trace.num_steps:
            raise click.BadParameter(f"step {step} is outside 0..{trace.num_steps - 1}", param_hint="--step")
        console.print(_step_table(trace, node_index, step))
        if step is not None:
            w = trace.witness_at(step)
            console.print(f"step {step}: pre-state {trace.state_hash_at(step).hex()}  post-state "
                          f"{trace.state_hash_at(step + 1).hex()}  witness {w.size_bytes()} bytes "
                          f"({len(w.words)} words, {len(w.siblings)} proof hashes)")


def _replay_game(address: str, l1_url: str | None, bundle_path: str | None) -> None:
    """``aievm replay --game``: a finished (or running) dispute game from L1."""
    from ai_evm.dispute.client import L1, DisputeError
    from ai_evm.dispute.replay import replay_game

    if l1_url is None:
        raise click.UsageError("--game needs --l1 URL")
    bundle = _load_bundle(bundle_path) if bundle_path is not None else None
    from web3.exceptions import Web3Exception

    try:
        replay_game(L1(l1_url), address, bundle, click.echo)
    except DisputeError as e:
        raise click.ClickException(str(e)) from None
    except (Web3Exception, OSError) as e:
        raise click.ClickException(f"L1 request failed: {e}") from None


def _rpc(url: str, method: str, *params: Any) -> Any:
    """One JSON-RPC request to the L2 node (click errors for a refused or failed request)."""
    import urllib.error
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise click.ClickException(f"L2 request {method} to {url} failed: {e}") from None
    if not isinstance(answer, dict):
        raise click.ClickException(f"L2 node answered {method} with {type(answer).__name__}, not a JSON-RPC response")
    if answer.get("error") is not None:
        err = answer["error"]
        message = err.get("message") if isinstance(err, dict) else err
        raise click.ClickException(f"L2 node refused {method}: {message}")
    return answer.get("result")


def _hex_bytes(value: Any, what: str) -> bytes:
    try:
        if not isinstance(value, str) or not value.startswith("0x"):
            raise ValueError("not 0x-prefixed hex")
        return bytes.fromhex(value[2:])
    except ValueError as e:
        raise click.ClickException(f"the node's inference record has a bad {what}: {e}") from None


def _tx_bundle(model: bytes, bundle_path: str | None, store_uri: str | None, stores: dict[str, Any]) -> Any:
    """The bundle of ``model``: the given file (which must be that model), else the store."""
    if bundle_path is not None:
        bundle = _load_bundle(bundle_path)
        if bytes(bundle.address) != model:
            raise click.ClickException(f"{bundle_path} is model {bundle.address_hex}, but the inference ran "
                                       f"model 0x{model.hex()}")
        return bundle
    from opml.errors import OpmlError
    from opml.store import open_store

    try:
        if "store" not in stores:
            stores["store"] = open_store(store_uri)
        return stores["store"].get_bundle(model)
    except (OpmlError, OSError) as e:  # absent, unreachable, corrupt (the store verifies the bytes)
        where = store_uri or "the local model store"
        raise click.ClickException(f"model 0x{model.hex()} is not in {where}: {e} "
                                   "(give --store or the bundle)") from None


def _replay_tx(tx_hash: str, rpc_url: str | None, bundle_path: str | None, store_uri: str | None,
               record_index: int | None, node_index: int | None, step: int | None, console: Any) -> None:
    """``aievm replay --tx``: each inference of an L2 transaction, from its records to the VM steps."""
    from opml.engine import decode_inputs, run_bytes
    from opml.errors import OpmlError
    from opml.merkle import keccak

    if rpc_url is None:
        raise click.UsageError("--tx needs --rpc URL (the L2 node)")
    h = tx_hash.lower()
    if len(h) != 66 or not h.startswith("0x") or any(c not in "0123456789abcdef" for c in h[2:]):
        raise click.BadParameter(f"{tx_hash!r} is not a transaction hash (0x and 64 hex digits)", param_hint="--tx")
    records = _rpc(rpc_url, "aievm_getInferences", h)
    if records is None:
        raise click.ClickException(f"transaction {h} is not mined on {rpc_url}")
    if not isinstance(records, list):
        raise click.ClickException(f"aievm_getInferences answered {type(records).__name__}, not a list")
    if not records:
        console.print(f"transaction {h} ran no inference")
        return
    if record_index is not None and not 0 <= record_index < len(records):
        raise click.BadParameter(f"the transaction ran {len(records)} inferences (0..{len(records) - 1})",
                                 param_hint="--index")
    console.print(f"transaction {h}: {len(records)} inference{'s' if len(records) != 1 else ''}")
    callers = _inference_callers(rpc_url, h)
    stores: dict[str, Any] = {}
    for k, rec in enumerate(records):
        if record_index is not None and k != record_index:
            continue
        if not isinstance(rec, dict):
            raise click.ClickException(f"inference record {k} is {type(rec).__name__}, not an object")
        try:
            model, gas = _hex_bytes(rec["model"], "model"), int(rec["gas"])
            payload, output = _hex_bytes(rec["input"], "input"), _hex_bytes(rec["output"], "output")
            input_hash = _hex_bytes(rec["inputHash"], "inputHash")
            output_hash = _hex_bytes(rec["outputHash"], "outputHash")
        except (KeyError, TypeError, ValueError) as e:
            raise click.ClickException(f"inference record {k} lacks a field or has a bad one: {e}") from None
        console.rule(f"inference {rec.get('callIndex', k)}: model 0x{model.hex()}")
        if rec.get("callIndex") in callers:
            console.print(f"called by {callers[rec['callIndex']]}")
        console.print(f"gas {gas:,}  input {len(payload)} bytes (hash 0x{input_hash.hex()})  "
                      f"output {len(output)} bytes (hash 0x{output_hash.hex()})")
        if keccak(payload) != input_hash or keccak(output) != output_hash:
            raise click.ClickException(f"inference {k}: the node's input/output bytes do not hash to the record's "
                                       "inputHash/outputHash")
        bundle = _tx_bundle(model, bundle_path, store_uri, stores)
        try:
            arrays = decode_inputs(bundle, payload)
            rerun = run_bytes(bundle, payload)
        except OpmlError as e:
            raise click.ClickException(f"inference {k}: the recorded input does not run on the model: {e}") from None
        if rerun == output:
            console.print("re-executed here: the output equals the chain's")
        else:
            console.print("[bold red]re-executed here: the output DIFFERS from the chain's "
                          f"(0x{keccak(rerun).hex()} here): the record is challengeable")
        _replay_inference(bundle, arrays, node_index, step, None, console)


def _inference_callers(rpc_url: str, tx_hash: str) -> dict[int, str]:
    """``callIndex`` -> "CALLER (call path)" from the node's callTracer ({} if it has no tracing)."""
    try:
        top = _rpc(rpc_url, "debug_traceTransaction", tx_hash, {"tracer": "callTracer"})
    except click.ClickException:
        return {}
    found: dict[int, str] = {}

    def walk(frame: Any, path: list[str]) -> None:
        if not isinstance(frame, dict):
            return
        here = [*path, str(frame.get("to"))]
        inference = frame.get("inference")
        if isinstance(inference, dict) and isinstance(inference.get("callIndex"), int):
            found[inference["callIndex"]] = f"{frame.get('from')} ({' > '.join(path) or 'the transaction'})"
        for child in frame.get("calls") or []:
            walk(child, here)

    walk(top, [str(top.get("from"))] if isinstance(top, dict) else [])
    return found
