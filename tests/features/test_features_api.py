"""Public surface, configuration, engine misuse and edge cases of the feature package."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import features
from features import (
    FEATURE_NAMES,
    EngineStateError,
    FeatureConfig,
    FeatureConfigError,
    FeatureEngine,
    FeatureError,
    new_batch,
)
from tests.features.features_reference import Reference
from tests.features.features_workload import DAY, T0, generate


def test_public_names_are_exactly_the_intended_ones() -> None:
    """__all__ lists exactly the API the server, rules and models code against, each name importable."""
    assert set(features.__all__) == {
        "CATALOGUE", "DEFAULT_RATES", "ENUMS", "FEATURE_INDEX", "FEATURE_NAMES", "NO_BALANCE", "NO_TIME",
        "OUTCOME_DTYPE", "TABULAR_COLUMNS", "TXN_DTYPE", "BackendError", "EncodingError", "EngineStateError",
        "FeatureConfig", "FeatureConfigError", "FeatureEngine", "FeatureError", "FeatureKind", "FeatureSpec",
        "RecoveryError", "StateBackend", "encode_frame", "feature_index", "lazy_names", "new_batch", "stable_key",
        "stable_key_bytes",
    }
    assert len(set(features.__all__)) == len(features.__all__)
    assert all(hasattr(features, name) for name in features.__all__)


def test_lazy_names_load_on_first_use_and_refuse_unknown_ones() -> None:
    """A lazily exported name is imported at its first lookup and kept; a name nobody exports is an AttributeError
    naming the package, as for any module."""
    namespace: dict[str, object] = {"__name__": "pkg"}
    getattr_ = features.lazy_names(namespace, {"json": ("dumps", "loads")})
    import json

    assert getattr_("dumps") is json.dumps and namespace["dumps"] is json.dumps and "loads" not in namespace
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'dump'"):
        getattr_("dump")


def test_errors_share_one_root() -> None:
    """Every error class of the package derives from FeatureError."""
    for name in ("BackendError", "EncodingError", "EngineStateError", "FeatureConfigError", "RecoveryError"):
        assert issubclass(getattr(features, name), FeatureError)


@pytest.mark.parametrize(
    ("currency", "minor", "fen"),
    [
        ("CNY", 12345, 12345),
        ("USD", 100, 710),  # 1.00 USD = 7.10 CNY
        ("USD", 1, 7),  # 0.071 CNY -> 7.1 fen -> 7
        ("JPY", 1000, 4800),  # no minor unit: 1000 JPY = 48 CNY
        ("JPY", 1, 5),  # 4.8 fen -> 5
        ("HKD", 50, 46),  # 45.5 fen rounds half up -> 46
        ("KWD", 1000, 2310),  # three decimals: 1.000 KWD = 23.10 CNY
    ],
)
def test_to_fen_is_exact_and_rounds_half_up(currency: str, minor: int, fen: int) -> None:
    """Conversion uses exact fractions of the decimal-string rate and rounds half up once."""
    assert FeatureConfig().to_fen(currency, minor) == fen


def test_config_validation_names_the_field() -> None:
    """Invalid settings raise FeatureConfigError naming the field and saying what is accepted."""
    with pytest.raises(FeatureConfigError, match="currency_rates"):
        FeatureConfig(currency_rates={"CNY": "1", "USD": "7,10"})
    with pytest.raises(FeatureConfigError, match="CNY"):
        FeatureConfig(currency_rates={"USD": "7.10"})
    with pytest.raises(FeatureConfigError, match="retention_days"):
        FeatureConfig(retention_days=30, lateness_seconds=3600)
    with pytest.raises(FeatureConfigError, match="just_under_fraction"):
        FeatureConfig(just_under_fraction="1.5")
    assert not FeatureConfig().is_known_currency("XXX")
    assert FeatureConfig().is_known_currency("EUR")


def test_config_is_a_hashable_value() -> None:
    """Configurations compare by value and can be hashed (the rate table is a read-only mapping)."""
    assert FeatureConfig() == FeatureConfig()
    assert hash(FeatureConfig()) == hash(FeatureConfig())
    assert FeatureConfig(home_country="HK") != FeatureConfig()
    with pytest.raises(TypeError):
        FeatureConfig().currency_rates["USD"] = "1"  # type: ignore[index]


def test_commit_must_follow_its_score(config: FeatureConfig) -> None:
    """commit() with other handles, or twice, is refused with EngineStateError."""
    engine = FeatureEngine.open(config)
    batch = new_batch(2)
    batch["account_key"] = [1, 2]
    batch["event_time_us"] = T0
    batch["amount_fen"] = 100
    batch["txn_type"] = 1
    _, handles = engine.score(batch)
    with pytest.raises(EngineStateError):
        engine.commit(batch, handles + 100, np.zeros(2, bool))
    engine.commit(batch, handles, np.zeros(2, bool))
    with pytest.raises(EngineStateError):
        engine.commit(batch, handles, np.zeros(2, bool))


def test_uncommitted_score_is_committed_unblocked_by_the_next(config: FeatureConfig) -> None:
    """A score() never committed counts as not blocked when the next score() comes."""
    engine = FeatureEngine.open(config)
    first = new_batch(1)
    first["account_key"] = 5
    first["event_time_us"] = T0
    first["amount_fen"] = 500
    first["txn_type"] = 1
    engine.score(first)
    second = first.copy()
    second["event_time_us"] = T0 + 1
    features_, _ = engine.score(second)
    assert features_[0, FEATURE_NAMES.index("out_count_1h")] == 1.0


def test_empty_batches(config: FeatureConfig) -> None:
    """An empty call returns an empty (0, F) matrix and changes nothing."""
    engine = FeatureEngine.open(config)
    features_, handles = engine.score(new_batch(0))
    assert features_.shape == (0, len(FEATURE_NAMES)) and handles.shape == (0,)
    engine.commit(new_batch(0), handles, np.zeros(0, bool))
    assert engine.replay(new_batch(0)).shape == (0, len(FEATURE_NAMES))
    assert engine.stats()["applied"] == 0


def test_bad_records_are_refused(config: FeatureConfig) -> None:
    """Wrong dtype or an account key of 0 raise FeatureError before touching state."""
    engine = FeatureEngine.open(config)
    with pytest.raises(FeatureError, match="TXN_DTYPE"):
        engine.score(np.zeros(3))
    batch = new_batch(1)
    with pytest.raises(FeatureError, match="account_key 0"):
        engine.score(batch)
    assert engine.stats()["applied"] == 0


def test_closed_engine_refuses_work(config: FeatureConfig) -> None:
    """After close() every call raises EngineStateError."""
    engine = FeatureEngine.open(config)
    engine.close()
    with pytest.raises(EngineStateError, match="closed"):
        engine.score(new_batch(1))


def test_events_later_than_the_exact_horizon_undercount_only_old_windows(config: FeatureConfig) -> None:
    """An event more than retention behind the account's newest is scored and applied; its windows miss pruned
    events, while counts and the time since the previous event stay exact."""
    engine = FeatureEngine.open(config)
    rows = []
    for when in (T0, T0 + 60 * DAY, T0 + 1):  # the third is 60 days late
        batch = new_batch(1)
        batch["account_key"] = 9
        batch["amount_fen"] = 1000
        batch["txn_type"] = 1
        batch["event_time_us"] = when
        features_, handles = engine.score(batch)
        engine.commit(batch, handles, np.zeros(1, bool))
        rows.append(dict(zip(FEATURE_NAMES, features_[0], strict=True)))
    late = rows[2]
    assert late["txn_count_total"] == 2.0
    assert late["out_count_1h"] == 0.0  # the event at T0 was pruned when T0 + 60 days arrived
    assert late["seconds_since_last"] == 1e-6  # still exact: pruned times are remembered
    assert engine.stats()["applied"] == 3
    assert engine.stats()["events"] == 1


def test_late_events_within_lateness_are_exact(config: FeatureConfig) -> None:
    """Events late by up to retention - 30 days (>= lateness_seconds) match the full-history reference."""
    work = generate(config, seed=31, rows=800, late_days=4.9, batches=False)
    engine = FeatureEngine.open(config)
    reference = Reference(config)
    for call in work.calls:
        got, handles = engine.score(call.txns)
        engine.commit(call.txns, handles, call.blocked)
        want = reference.score_and_commit(call.txns, call.blocked)
        assert np.allclose(got, want, rtol=1e-9, atol=1e-9)


def test_sync_from_another_thread_while_scoring(tmp_path: Path, config: FeatureConfig) -> None:
    """A worker thread syncing in a loop while rows are scored loses nothing and writes each record once."""
    work = generate(config, seed=32, rows=1500, dry_share=0.0)
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    stop = threading.Event()
    written: list[int] = []

    def syncer() -> None:
        while not stop.is_set():
            written.append(engine.sync())

    thread = threading.Thread(target=syncer)
    thread.start()
    try:
        for call in work.calls:
            _, handles = engine.score(call.txns)
            engine.commit(call.txns, handles, call.blocked)
    finally:
        stop.set()
        thread.join()
    written.append(engine.sync())
    assert sum(written) == sum(len(c.txns) for c in work.calls)
    engine.close()
    recovered = FeatureEngine.open(config, data_dir=tmp_path)
    assert recovered.stats()["applied"] == sum(written)


def test_stats_report_memory(config: FeatureConfig) -> None:
    """stats() counts accounts and events and reports the bytes of state."""
    work = generate(config, seed=33, rows=300, dry_share=0.0)
    engine = FeatureEngine.open(config)
    for call in work.calls:
        _, handles = engine.score(call.txns)
        engine.commit(call.txns, handles, call.blocked)
    stats = engine.stats()
    accounts = len(np.unique(np.concatenate([c.txns["account_key"] for c in work.calls])))
    assert stats["accounts"] == accounts
    assert stats["applied"] == 300
    assert stats["state_bytes"] > 0


def _one(engine: FeatureEngine, account: int, when: int) -> None:
    batch = new_batch(1)
    batch["account_key"] = account
    batch["amount_fen"] = 1000
    batch["txn_type"] = 1
    batch["event_time_us"] = when
    _, handles = engine.score(batch)
    engine.commit(batch, handles, np.zeros(1, bool))


def test_the_sweep_frees_the_events_of_dormant_accounts(config: FeatureConfig) -> None:
    """Events past the retention of accounts that never come back are freed by the sweep that follows other
    accounts' rows, a late event included, and an account's newer events only once they pass it too."""
    engine = FeatureEngine.open(config)
    retention = config.retention_days * DAY
    dormant = range(1, 41)
    for account in dormant:
        _one(engine, account, T0 + 10 * DAY)
        _one(engine, account, T0 + 8 * DAY)  # late (within retention), so older than the account's first event
    # Another account moves business time to T0 + 9 days + retention: each dormant account's late event is past
    # the horizon, its first event is not.
    for i in range(100):
        _one(engine, 99, T0 + 9 * DAY + retention + i)
    assert engine.stats()["events"] == len(dormant) + 100
    for i in range(100):
        _one(engine, 99, T0 + 11 * DAY + retention + i)
    assert engine.stats()["events"] == 200  # only account 99's own rows are left


def test_a_state_saved_before_oldest_times_were_kept_loads_and_sweeps(config: FeatureConfig) -> None:
    """A state exported without the h_oldest column (an older snapshot) loads, and then scores and frees events
    exactly as the state it was taken from."""
    from features._embedded import EmbeddedState

    work = generate(config, seed=35, rows=3000, accounts=80, dry_share=0.0)  # about 50 days
    kept, reloaded = EmbeddedState(config), EmbeddedState(config)
    half = len(work.calls) // 2
    for call in work.calls[:half]:
        _, handles = kept.score(call.txns)
        kept.commit(call.txns, handles, call.blocked)
    old = {name: array for name, array in kept.export().items() if name != "h_oldest"}
    reloaded.load(old)
    for call in work.calls[half:]:
        want, handles = kept.score(call.txns)
        kept.commit(call.txns, handles, call.blocked)
        got, handles = reloaded.score(call.txns)
        reloaded.commit(call.txns, handles, call.blocked)
        assert np.array_equal(got, want)
    assert reloaded.stats() == kept.stats()
