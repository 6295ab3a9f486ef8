"""Named errors of the fraud VM (one small hierarchy; messages say what was wrong)."""

from __future__ import annotations


class FraudVMError(Exception):
    """Base class of every fraud-VM error."""


class InvalidStep(FraudVMError):
    """The instruction cannot execute from this state (halted, out of range, engine-level error)."""


class InvalidWitness(FraudVMError):
    """A step witness does not match the pre-state hash, the context or the memory root."""


class UnsupportedOp(FraudVMError):
    """The compiler cannot express this graph node as a VM program."""
