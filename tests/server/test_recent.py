"""The recent-transactions index (where outcome reports find a transaction's counterparty): bounded, newest kept."""

from __future__ import annotations

import numpy as np

from features import new_batch
from server._service import _RecentTransactions


def _batch(start: int, n: int, *, dry_every: int = 0) -> tuple[list[str], np.ndarray]:
    txns = new_batch(n)
    txns["account_key"] = np.arange(start, start + n, dtype=np.uint64) + 1
    txns["counterparty_key"] = 7
    if dry_every:
        txns["apply"][::dry_every] = 0
    return [f"t{i}" for i in range(start, start + n)], txns


def test_keeps_the_newest_between_half_and_all_of_its_capacity() -> None:
    """After 2,500 applied transactions into a capacity of 1,000, the newest 500 are always found, the oldest never."""
    recent = _RecentTransactions(capacity=1000)
    for start in range(0, 2500, 100):
        ids, txns = _batch(start, 100)
        recent.record(ids, txns, None)  # type: ignore[arg-type]
        assert len(recent) <= 1000
    assert all(recent.get(f"t{i}") == 7 for i in range(2000, 2500))
    assert all(recent.get(f"t{i}") is None for i in range(0, 1500))


def test_dry_runs_are_not_indexed() -> None:
    """Rows with apply = 0 (dry runs) are left out; the others of the same batch are kept."""
    recent = _RecentTransactions(capacity=1000)
    ids, txns = _batch(0, 10, dry_every=2)
    recent.record(ids, txns, None)  # type: ignore[arg-type]
    assert [recent.get(f"t{i}") is not None for i in range(10)] == [i % 2 == 1 for i in range(10)]
