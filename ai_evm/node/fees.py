"""``eth_feeHistory``: base fees, gas used ratios and priority-fee percentiles of recent blocks.

As geth: ``baseFeePerGas`` has one entry more than the block count (the next block's base fee);
``reward[i][j]`` is the smallest priority fee such that transactions paying at most it used at
least ``percentiles[j]`` percent of block ``i``'s gas (0 for empty blocks).
"""

from __future__ import annotations

from typing import Any

from .encoding import quantity
from .errors import InvalidParams

MAX_FEE_HISTORY_BLOCKS = 1024
MAX_PERCENTILES = 100


def parse_percentiles(value: Any) -> list[float] | None:
    """A list of at most 100 ascending numbers in [0, 100], or None."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_PERCENTILES:
        raise InvalidParams(f"invalid rewardPercentiles: expected a list of at most {MAX_PERCENTILES} numbers")
    out: list[float] = []
    for p in value:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 100:
            raise InvalidParams(f"invalid reward percentile {p!r}: expected a number in [0, 100]")
        if out and p < out[-1]:
            raise InvalidParams("invalid rewardPercentiles: values must be ascending")
        out.append(float(p))
    return out


def _rewards(record: dict[str, Any], base_fee: int, percentiles: list[float]) -> list[str]:
    receipts = record["receipts"]
    if not receipts:
        return ["0x0"] * len(percentiles)
    items = sorted(
        (int(r["effectiveGasPrice"], 16) - base_fee, int(r["gasUsed"], 16)) for r in receipts
    )
    total = sum(g for _, g in items)
    out, i, acc = [], 0, items[0][1]
    for p in percentiles:
        threshold = total * p / 100
        while acc < threshold and i < len(items) - 1:
            i += 1
            acc += items[i][1]
        out.append(quantity(max(items[i][0], 0)))
    return out


def fee_history(seq: Any, count: int, newest: int, percentiles_raw: Any) -> dict[str, Any]:
    """The ``eth_feeHistory`` result for ``count`` blocks ending at ``newest`` (caller holds the lock)."""
    percentiles = parse_percentiles(percentiles_raw)
    count = min(count, MAX_FEE_HISTORY_BLOCKS, newest + 1)
    oldest = newest - count + 1
    base_fees, ratios, blob_ratios, rewards = [], [], [], []
    for n in range(oldest, newest + 1):
        header = seq.header_by_number(n)
        base_fee = int(getattr(header, "base_fee_per_gas", 0) or 0)
        base_fees.append(quantity(base_fee))
        ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
        blob_ratios.append(0.0)
        if percentiles is not None:
            rewards.append(_rewards(seq.record(n), base_fee, percentiles))
    head = seq.head()
    if newest == head.block_number:
        next_fee = seq.chain.header.base_fee_per_gas
    else:
        next_fee = seq.header_by_number(newest + 1).base_fee_per_gas
    base_fees.append(quantity(int(next_fee)))
    out: dict[str, Any] = {
        "oldestBlock": quantity(oldest),
        "baseFeePerGas": base_fees if count else [],
        "gasUsedRatio": ratios,
        "baseFeePerBlobGas": ["0x1"] * (count + 1) if count else [],
        "blobGasUsedRatio": blob_ratios,
    }
    if percentiles is not None:
        out["reward"] = rewards
    return out
