"""The AI EVM: py-evm's Prague fork with the inference precompiles (0xa1, 0xa0).

Fork by subclassing, wire by configuration: :class:`AIComputation` merges the precompiles into
Prague's table, :class:`AIState` uses it, :class:`AIVM` (fork ``ai-prague``) uses that state, and
:func:`make_chain_class` binds a node's model store through a :class:`ModelResolver`.
docs/precompile.md specifies the ABI, the gas formula and the failure semantics.
"""

from .call import InferenceRecord, decode_return, encode_call, encode_inline_call
from .computation import AI_PRECOMPILES, INFERENCE_ADDRESS, INFERENCE_INLINE_ADDRESS, AIComputation
from .errors import InferenceFailed, MalformedCall, ModelUnavailable, OutputSizeMismatch
from .models import FetchStatus, ModelFetcher, ModelFetchRequired, ModelResolver
from .records import (
    computation_records,
    inference_failures,
    inference_records,
    inference_root,
    walk_computations,
)
from .state import AIState
from .vm import AIVM, AIChain, make_chain_class, make_vm_class

__all__ = [
    "AIChain",
    "AIComputation",
    "AIState",
    "AIVM",
    "AI_PRECOMPILES",
    "FetchStatus",
    "INFERENCE_ADDRESS",
    "INFERENCE_INLINE_ADDRESS",
    "InferenceFailed",
    "InferenceRecord",
    "MalformedCall",
    "ModelFetchRequired",
    "ModelFetcher",
    "ModelResolver",
    "ModelUnavailable",
    "OutputSizeMismatch",
    "computation_records",
    "decode_return",
    "encode_call",
    "encode_inline_call",
    "inference_failures",
    "inference_records",
    "inference_root",
    "make_chain_class",
    "make_vm_class",
    "walk_computations",
]
