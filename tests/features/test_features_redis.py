"""The Redis backend against the reference and the embedded backend, on a real redis-server."""

from __future__ import annotations

import numpy as np
import pytest

from features import BackendError, FeatureConfig, FeatureEngine, new_batch, stable_key
from tests.features.features_reference import Reference
from tests.features.features_workload import T0, Call, Outcome, generate
from tests.features.test_features_reference import assert_same_features, run_both

pytestmark = pytest.mark.redis


def run(engine: FeatureEngine, steps: list[Call | Outcome]) -> np.ndarray:
    """Features of every call, in order."""
    chunks = []
    for step in steps:
        if isinstance(step, Outcome):
            engine.record_outcome(step.counterparty, step.reported_at, step.fraud)
        else:
            got, handles = engine.score(step.txns)
            engine.commit(step.txns, handles, step.blocked)
            chunks.append(got)
    return np.concatenate(chunks) if chunks else np.zeros((0, 0))


def test_redis_matches_reference(redis_url: str, config: FeatureConfig) -> None:
    """Every feature from Redis state equals the reference (late events, blocked rows, dry runs, labels)."""
    work = generate(config, seed=21, rows=1200)
    with FeatureEngine.open(config, backend="redis", redis_url=redis_url) as engine:
        run_both(engine, Reference(config), work)


def test_redis_agrees_with_embedded(redis_url: str, config: FeatureConfig) -> None:
    """Both backends give identical feature matrices on the same history."""
    work = generate(config, seed=22, rows=1000, accounts=4)
    embedded = run(FeatureEngine.open(config), work.steps)
    with FeatureEngine.open(config, backend="redis", redis_url=redis_url) as engine:
        shared = run(engine, work.steps)
    assert_same_features(shared, embedded, "redis vs embedded")


def test_two_engines_share_state(redis_url: str, config: FeatureConfig) -> None:
    """Two engines on one Redis, taking turns, see the same state as one engine doing everything."""
    work = generate(config, seed=23, rows=800)
    single = run(FeatureEngine.open(config), work.steps)
    first = FeatureEngine.open(config, backend="redis", redis_url=redis_url)
    second = FeatureEngine.open(config, backend="redis", redis_url=redis_url)
    chunks = [run(first if n % 2 else second, [step]) for n, step in enumerate(work.steps)]
    both = np.concatenate([c for c in chunks if c.size])
    assert_same_features(both, single, "two replicas")
    assert first.stats()["applied"] == second.stats()["applied"] > 0
    first.close()
    second.close()


def _row(minute: int, amount_cny: int, counterparty: str, *, apply: int = 1) -> np.ndarray:
    row = new_batch(1)
    row["event_time_us"] = T0 + minute * 60_000_000
    row["account_key"] = stable_key("acct-race")
    row["counterparty_key"] = stable_key(counterparty)
    row["device_key"] = stable_key("device-1")
    row["amount_minor"] = row["amount_fen"] = amount_cny * 100
    row["txn_type"] = 1
    row["channel"] = 2
    row["apply"] = apply
    return row


def _apply(engine: FeatureEngine, row: np.ndarray, blocked: bool) -> None:
    _, handles = engine.score(row)
    engine.commit(row, handles, np.array([blocked]))


@pytest.mark.parametrize("history", [0, 3])
@pytest.mark.parametrize("others_counterparty", ["cp-new", "cp-else"])
def test_a_blocked_row_fixed_up_after_another_replica_applied_a_row(
    redis_url: str, config: FeatureConfig, history: int, others_counterparty: str
) -> None:
    """Replica B applies a row between replica A's score and its commit of a blocked row of the same account:
    the state then equals one engine's after the blocked row and B's row, in that order (the typical amount;
    the blocked row's new counterparty stays seen only if B's row used it too)."""
    earlier = [_row(i, 300 + 50 * i, f"cp-old-{i}") for i in range(history)]
    blocked, other = _row(10, 9_000, "cp-new"), _row(11, 200, others_counterparty)
    probe = _row(12, 100, "cp-new", apply=0)

    single = FeatureEngine.open(config)
    for row in earlier:
        _apply(single, row, False)
    _apply(single, blocked, True)
    _apply(single, other, False)
    want, _ = single.score(probe)

    first = FeatureEngine.open(config, backend="redis", redis_url=redis_url)
    second = FeatureEngine.open(config, backend="redis", redis_url=redis_url)
    for row in earlier:
        _apply(first, row, False)
    _, handles = first.score(blocked)
    _apply(second, other, False)  # the other replica, between the score and the commit
    first.commit(blocked, handles, np.array([True]))
    got, _ = first.score(probe)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    first.close()
    second.close()


def test_unreachable_redis_is_a_backend_error(config: FeatureConfig) -> None:
    """A Redis that is not there raises BackendError saying what to check."""
    with pytest.raises(BackendError, match="redis_url"):
        FeatureEngine.open(config, backend="redis", redis_url="redis://127.0.0.1:1/0")


