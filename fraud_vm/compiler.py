"""Compiler: a node context to its numpy program (for tracing and fast-forward).

The instruction at ``pc`` is a pure function of the node context (``fraud_vm.context``). Two
implementations derive it and are tested equal at every ``pc``:

- ``fraud_vm.stepper`` (``num_steps``, ``instr_at``): closed-form integer arithmetic over the
  lanes of one instruction, numpy-free; the one-step verifier uses only it, and the Solidity
  verifier mirrors it;
- ``compile_context(ctx)``: a ``fraud_vm.programs.Program`` built by ``fraud_vm.lowering`` from
  numpy index arrays, which also computes the registers at any ``pc`` and the output elements
  written before it (fast-forward, ``fraud_vm.trace``).

The loop nests are documented in ``docs/fraud_vm.md`` "Programs". Imports run one way:
``compiler -> lowering -> programs -> context`` (no cycle).
"""

from __future__ import annotations

from collections import OrderedDict

from .context import NodeContext, TensorInfo, check_arity, context_for, decode_context
from .errors import UnsupportedOp
from .lowering import lower
from .programs import Program

_CACHE: OrderedDict[bytes, Program] = OrderedDict()


def compile_context(ctx: NodeContext) -> Program:
    """The numpy program of a node context (cached by context hash; UnsupportedOp if it has none)."""
    key = ctx.hash
    prog = _CACHE.get(key)
    if prog is None:
        check_arity(ctx)
        prog = lower(ctx)
        _CACHE[key] = prog
        while len(_CACHE) > 64:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return prog


__all__ = ["NodeContext", "Program", "TensorInfo", "UnsupportedOp", "compile_context", "context_for", "decode_context"]
