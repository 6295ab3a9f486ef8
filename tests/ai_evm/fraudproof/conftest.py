"""Fixtures of the EVM fraud-proof tests: the small L2 chain of :mod:`evm_fraud_chain`."""

from evm_fraud_chain import l2  # noqa: F401  (the package-scoped fixture)
