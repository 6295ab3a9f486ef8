"""Errors of the AI EVM: every failure of an inference call is an :class:`InferenceFailed`.

``InferenceFailed`` subclasses py-evm's ``VMError``, so raising it inside a precompile frame is an
exceptional halt: the call fails and consumes all the gas it was given (DESIGN §5), and the
message stays on the child computation's ``error`` for node logs and ``eth_call`` error data.
"""

from __future__ import annotations

from eth.exceptions import VMError


class InferenceFailed(VMError):
    """An inference precompile call failed; the message says why and what to do."""


class MalformedCall(InferenceFailed):
    """The call data does not follow the precompile's layout (docs/precompile.md)."""


class ModelUnavailable(InferenceFailed):
    """The model address is unknown to this node's model store, or the store failed."""


class OutputSizeMismatch(InferenceFailed):
    """The ``outputSize`` word differs from the output length the model produces for this input."""
