"""The Redis backend against the reference and the embedded backend, on a real redis-server."""

from __future__ import annotations

import numpy as np
import pytest

from features import BackendError, FeatureConfig, FeatureEngine
from tests.features.features_reference import Reference
from tests.features.features_workload import Call, Outcome, generate
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


def test_unreachable_redis_is_a_backend_error(config: FeatureConfig) -> None:
    """A Redis that is not there raises BackendError saying what to check."""
    with pytest.raises(BackendError, match="redis_url"):
        FeatureEngine.open(config, backend="redis", redis_url="redis://127.0.0.1:1/0")


