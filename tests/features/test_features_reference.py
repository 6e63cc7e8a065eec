"""Every feature of the embedded engine against the plain-Python reference on generated histories."""

from __future__ import annotations

import numpy as np
import pytest

from features import FEATURE_NAMES, FeatureConfig, FeatureEngine
from tests.features.features_reference import Reference
from tests.features.features_workload import Call, Outcome, Workload, all_rows, generate


def assert_same_features(got: np.ndarray, want: np.ndarray, context: str) -> None:
    """Equal up to float rounding; the message names the first differing row and feature."""
    close = np.isclose(got, want, rtol=1e-9, atol=1e-9)
    if not close.all():
        row, col = map(int, np.argwhere(~close)[0])
        raise AssertionError(
            f"{context}: row {row}, feature {FEATURE_NAMES[col]}: engine {got[row, col]!r} != reference "
            f"{want[row, col]!r} ({int((~close).sum())} values differ)"
        )


def run_both(engine: FeatureEngine, reference: Reference, work: Workload) -> None:
    """Feed the same calls and outcomes to both and compare each call's features."""
    for n, step in enumerate(work.steps):
        if isinstance(step, Outcome):
            engine.record_outcome(step.counterparty, step.reported_at, step.fraud)
            reference.record_outcome(step.counterparty, step.reported_at, step.fraud)
            continue
        got, handles = engine.score(step.txns)
        assert ((handles >= 0) == (step.txns["apply"] == 1)).all()
        engine.commit(step.txns, handles, step.blocked)
        want = reference.score_and_commit(step.txns, step.blocked)
        assert_same_features(got, want, f"step {n}")


@pytest.mark.parametrize("seed", [1, 2])
def test_embedded_matches_reference(config: FeatureConfig, seed: int) -> None:
    """Batches with late events, blocked rows, dry runs, currencies and delayed labels match the reference."""
    work = generate(config, seed=seed, rows=2500)
    run_both(FeatureEngine.open(config), Reference(config), work)


def test_exercises_every_feature(config: FeatureConfig) -> None:
    """The generated history gives every feature a non-trivial value (so the comparison can fail)."""
    work = generate(config, seed=1, rows=2500)
    engine = FeatureEngine.open(config)
    matrices = []
    for step in work.steps:
        if isinstance(step, Call):
            got, handles = engine.score(step.txns)
            engine.commit(step.txns, handles, step.blocked)
            matrices.append(got)
        else:
            engine.record_outcome(step.counterparty, step.reported_at, step.fraud)
    features = np.concatenate(matrices)
    constant = [name for i, name in enumerate(FEATURE_NAMES) if np.unique(features[:, i]).size < 2]
    assert constant == []


def test_single_accounts_heavy_history(config: FeatureConfig) -> None:
    """Few accounts with long chains (distinct counts past the small-set path) match the reference."""
    work = generate(config, seed=7, rows=1500, accounts=3, late_days=1.0)
    run_both(FeatureEngine.open(config), Reference(config), work)


def test_replay_matches_reference_with_label_delays(config: FeatureConfig) -> None:
    """replay() equals the reference fed row by row, outcomes fed before the first row at or after reported_at."""
    work = generate(config, seed=3, rows=2000, blocked_share=0.0, dry_share=0.0)
    rows = all_rows(work)
    outcome_steps = [s for s in work.steps if isinstance(s, Outcome)]
    outcomes = np.array(
        [(o.reported_at, o.counterparty, o.fraud) for o in outcome_steps],
        dtype=[("reported_at_us", np.int64), ("counterparty_key", np.uint64), ("is_fraud", np.bool_)],
    )
    got = FeatureEngine.open(config).replay(rows, outcomes)
    reference = Reference(config)
    running_max = np.maximum.accumulate(rows["event_time_us"])
    position = np.searchsorted(running_max, outcomes["reported_at_us"], side="left")
    want = np.empty_like(got)
    for i in range(len(rows)):
        for j in np.flatnonzero(position == i):
            o = outcome_steps[int(j)]
            reference.record_outcome(o.counterparty, o.reported_at, o.fraud)
        want[i] = reference.score_and_commit(rows[i : i + 1], np.zeros(1, dtype=bool))[0]
    assert_same_features(got, want, "replay")


def test_replay_equals_online_scoring(config: FeatureConfig) -> None:
    """The offline path gives exactly the features of online single-row score+commit (one code path)."""
    work = generate(config, seed=4, rows=1500, blocked_share=0.0, dry_share=0.0)
    rows = all_rows(work)
    offline = FeatureEngine.open(config).replay(rows)
    online_engine = FeatureEngine.open(config)
    online = np.empty_like(offline)
    for i in range(len(rows)):
        online[i], handles = online_engine.score(rows[i : i + 1])
        online_engine.commit(rows[i : i + 1], handles, np.zeros(1, dtype=bool))
    assert np.array_equal(offline, online)


def test_dry_runs_change_nothing(config: FeatureConfig) -> None:
    """Scoring with apply=0 leaves the state as it was: same stats and same later features."""
    work = generate(config, seed=5, rows=600, dry_share=0.0)
    rows = all_rows(work)
    with_dry = FeatureEngine.open(config)
    without = FeatureEngine.open(config)
    for i in range(0, len(rows), 3):
        chunk = rows[i : i + 3]
        _, ha = with_dry.score(chunk)
        with_dry.commit(chunk, ha, np.zeros(len(chunk), bool))
        _, hb = without.score(chunk)
        without.commit(chunk, hb, np.zeros(len(chunk), bool))
        dry = rows[(i * 7) % len(rows) : (i * 7) % len(rows) + 4].copy()
        dry["apply"] = 0
        _, handles = with_dry.score(dry)
        assert (handles == -1).all()
        with_dry.commit(dry, handles, np.zeros(len(dry), bool))
    assert with_dry.stats() == without.stats()
    probe = rows[-50:].copy()
    probe["apply"] = 0
    assert np.array_equal(with_dry.score(probe)[0], without.score(probe)[0])


def test_blocked_attempt_does_not_register_counterparty(config: FeatureConfig) -> None:
    """A blocked first payment leaves the counterparty new, the sums empty, but counts as an attempt."""
    work = generate(config, seed=6, rows=1, batches=False, dry_share=0.0)
    row = work.calls[0].txns.copy()
    row["txn_type"] = 1
    row["counterparty_key"] = 99
    engine = FeatureEngine.open(config)
    _, handles = engine.score(row)
    engine.commit(row, handles, np.array([True]))
    later = row.copy()
    later["event_time_us"] += 60_000_000
    features, _ = engine.score(later)
    named = dict(zip(FEATURE_NAMES, features[0], strict=True))
    assert named["is_new_counterparty"] == 1.0
    assert named["out_count_1h"] == 0.0
    assert named["txn_count_total"] == 1.0
    assert named["seconds_since_last"] == 60.0
