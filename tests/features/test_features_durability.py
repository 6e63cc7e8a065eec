"""Durability of the embedded state: recovery from log and snapshots equals a replay of what was synced."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features import TXN_DTYPE, FeatureConfig, FeatureEngine, RecoveryError
from features._durability import KIND_TXN, read_data_dir
from tests.features.features_workload import Call, Outcome, Workload, generate


def feed(engine: FeatureEngine, steps: list[Call | Outcome]) -> None:
    """Apply calls (with their blocked flags) and outcomes."""
    for step in steps:
        if isinstance(step, Outcome):
            engine.record_outcome(step.counterparty, step.reported_at, step.fraud)
        else:
            _, handles = engine.score(step.txns)
            engine.commit(step.txns, handles, step.blocked)


def probe_features(engine: FeatureEngine, work: Workload) -> np.ndarray:
    """Dry-run features of every account seen, at a time after the history (state left unchanged)."""
    rows = np.concatenate([c.txns for c in work.calls])
    probe = rows[np.unique(rows["account_key"], return_index=True)[1]].copy()
    probe["event_time_us"] = rows["event_time_us"].max() + 1
    probe["apply"] = 0
    features, _ = engine.score(probe)
    return features


def reference_engine(config: FeatureConfig, steps: list[Call | Outcome]) -> FeatureEngine:
    """An in-memory engine fed the same steps (what a replay of the log must give)."""
    engine = FeatureEngine.open(config)
    feed(engine, steps)
    return engine


@pytest.mark.parametrize("snapshot_every", [0, 150])
def test_recovery_after_abrupt_stop_equals_replay(tmp_path: Path, snapshot_every: int) -> None:
    """Without close(), a reopened data_dir has exactly the synced rows: unsynced ones are gone, none missing."""
    config = FeatureConfig(snapshot_every=snapshot_every)
    work = generate(config, seed=11, rows=900)
    synced, unsynced = work.steps[: len(work.steps) * 2 // 3], work.steps[len(work.steps) * 2 // 3 :]
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, synced)
    assert engine.sync() > 0
    assert engine.wait_for_snapshots(30)  # the sync handed them to the snapshot writer
    feed(engine, unsynced)  # buffered, never synced: lost on an abrupt stop
    del engine  # no close(): nothing more is written
    recovered = FeatureEngine.open(config, data_dir=tmp_path)
    expected = reference_engine(config, synced)
    assert recovered.stats()["applied"] == expected.stats()["applied"]
    assert np.array_equal(probe_features(recovered, work), probe_features(expected, work))
    if snapshot_every:
        assert list(tmp_path.glob("snap-*.npz")), "a snapshot should have been written"


def test_close_and_reopen_keeps_everything(tmp_path: Path, config: FeatureConfig) -> None:
    """close() commits, snapshots and syncs; reopening continues exactly like an uninterrupted engine."""
    work = generate(config, seed=12, rows=800)
    first, second = work.steps[:200], work.steps[200:]
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, first)
    engine.close()
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, second)
    engine.sync()
    assert np.array_equal(probe_features(engine, work), probe_features(reference_engine(config, work.steps), work))


def test_one_writer_per_data_dir(tmp_path: Path, config: FeatureConfig) -> None:
    """A second engine on a data_dir in use is refused; after close() the directory can be reopened."""
    first = FeatureEngine.open(config, data_dir=tmp_path)
    with pytest.raises(RecoveryError, match="in use"):
        FeatureEngine.open(config, data_dir=tmp_path)
    first.close()
    FeatureEngine.open(config, data_dir=tmp_path).close()


def test_torn_tail_is_dropped(tmp_path: Path, config: FeatureConfig) -> None:
    """A partially written block at the end of the log (crash during write) is truncated on recovery."""
    work = generate(config, seed=13, rows=300)
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, work.steps)
    engine.sync()
    del engine  # an abrupt stop: no close()
    segment = sorted(tmp_path.glob("log-*.opl"))[-1]
    with segment.open("ab") as handle:
        handle.write(b"OPL1\x05\x00\x00\x00garbage")
    size_before = segment.stat().st_size
    recovered = FeatureEngine.open(config, data_dir=tmp_path)
    assert segment.stat().st_size < size_before
    assert np.array_equal(probe_features(recovered, work), probe_features(reference_engine(config, work.steps), work))


def test_segments_are_preallocated_and_recovery_cuts_the_unused_tail(tmp_path: Path, config: FeatureConfig) -> None:
    """A segment is reserved beyond its records (syncs change no file size); after an abrupt stop, recovery cuts
    the unused zeroed tail and keeps every synced record."""
    work = generate(config, seed=15, rows=200)
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, work.steps)
    engine.sync()
    segment = sorted(tmp_path.glob("log-*.opl"))[-1]
    data = segment.read_bytes()
    used = len(data.rstrip(b"\0"))
    assert len(data) >= 1 << 20 and 0 < used < len(data)
    del engine  # abrupt stop
    recovered = FeatureEngine.open(config, data_dir=tmp_path)
    assert used <= segment.stat().st_size < len(data)
    assert np.array_equal(probe_features(recovered, work), probe_features(reference_engine(config, work.steps), work))


def test_log_records_hold_the_applied_rows_field_by_field_with_padding_zeroed(
    tmp_path: Path, config: FeatureConfig
) -> None:
    """The log keeps each applied row's fields and blocked flag (dry-run rows are not logged); the alignment padding
    between the record's fields is written as zeros even when the caller's array holds other bytes there."""
    work = generate(config, seed=21, rows=300)
    calls = [step for step in work.steps if isinstance(step, Call)]
    assert any((c.txns["apply"] == 0).any() for c in calls) and any(c.blocked.any() for c in calls)
    covered = np.zeros(TXN_DTYPE.itemsize, dtype=bool)
    for field in (TXN_DTYPE.fields or {}).values():
        covered[field[1] : field[1] + field[0].itemsize] = True
    assert not covered.all(), "TXN_DTYPE has no padding any more: this test checks nothing"
    for call in calls:  # garbage in the padding bytes
        call.txns.view(np.uint8).reshape(len(call.txns), -1)[:, ~covered] = 0xAB
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, work.steps)
    engine.sync()
    recovered = read_data_dir(tmp_path, (tmp_path / "FINGERPRINT").read_text(encoding="utf-8"))
    logged = recovered.records[recovered.records["kind"] == KIND_TXN]
    applied = [c.txns["apply"] != 0 for c in calls]
    expected = np.concatenate([c.txns[a] for c, a in zip(calls, applied, strict=True)])
    assert len(logged) == len(expected) > 0
    for name in TXN_DTYPE.names or ():
        assert np.array_equal(logged["txn"][name], expected[name]), name
    blocked = np.concatenate([c.blocked[a] for c, a in zip(calls, applied, strict=True)])
    assert np.array_equal(logged["blocked"], blocked)
    # The file's own bytes (indexing a structured array copies it field by field, padding left undefined).
    records = recovered.records
    assert records.flags.c_contiguous
    raw = records.view(np.uint8).reshape(len(records), -1)[records["kind"] == KIND_TXN]
    assert not raw[:, : TXN_DTYPE.itemsize][:, ~covered].any()
    engine.close()


def test_unused_tail_of_an_earlier_segment_is_not_damage(tmp_path: Path) -> None:
    """A segment before the last one that still has zeroed reserved space (its cut never reached the disk) is
    read up to its records; a torn block there is still refused as damage."""
    config = FeatureConfig(snapshot_every=0)
    work = generate(config, seed=16, rows=400)
    first, second = work.steps[:150], work.steps[150:]
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, first)
    engine.sync()
    del engine  # abrupt stop (close() would snapshot and drop the segment)
    earlier = sorted(tmp_path.glob("log-*.opl"))[-1]
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, second)
    engine.sync()
    del engine  # abrupt stop: the last segment keeps its reserved tail too
    assert len(sorted(tmp_path.glob("log-*.opl"))) == 2
    with earlier.open("ab") as handle:
        handle.write(bytes(4096))
    recovered = FeatureEngine.open(config, data_dir=tmp_path)
    assert np.array_equal(probe_features(recovered, work), probe_features(reference_engine(config, work.steps), work))
    del recovered  # abrupt stop again: close() would snapshot and drop the earlier segments
    with earlier.open("ab") as handle:
        handle.write(b"OPL1\x05\x00\x00\x00garbage" + bytes(64))
    with pytest.raises(RecoveryError, match="damaged"):
        FeatureEngine.open(config, data_dir=tmp_path)


def test_a_failed_write_is_retried_by_the_next_sync(
    tmp_path: Path, config: FeatureConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync whose write fails (a full disk) raises and keeps its records queued: the next sync writes them, so
    the log still replays to the state in memory."""
    work = generate(config, seed=17, rows=300)
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, work.steps)
    real_pwrite = os.pwrite

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full_disk)
    with pytest.raises(OSError, match="No space"):
        engine.sync()
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert engine.sync() > 0
    del engine  # abrupt stop
    recovered = FeatureEngine.open(config, data_dir=tmp_path)
    assert np.array_equal(probe_features(recovered, work), probe_features(reference_engine(config, work.steps), work))


def test_other_settings_are_refused(tmp_path: Path, config: FeatureConfig) -> None:
    """A data_dir written under one retention cannot be reopened under another (state would be wrong)."""
    FeatureEngine.open(config, data_dir=tmp_path).close()
    with pytest.raises(RecoveryError, match="other feature settings"):
        FeatureEngine.open(FeatureConfig(retention_days=40), data_dir=tmp_path)


def test_sigkill_during_load_loses_nothing_synced(tmp_path: Path, config: FeatureConfig) -> None:
    """A child process killed with SIGKILL after sync() restarts with every synced row (and only those)."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import numpy as np
        sys.path[:0] = {[str(Path(__file__).parents[2])]!r}
        from features import FeatureConfig, FeatureEngine
        from tests.features.features_workload import Call, Outcome, generate
        config = FeatureConfig(snapshot_every=200)
        work = generate(config, seed=14, rows=700)
        engine = FeatureEngine.open(config, data_dir={str(tmp_path)!r})
        synced = 0
        for n, step in enumerate(work.steps):
            if isinstance(step, Outcome):
                engine.record_outcome(step.counterparty, step.reported_at, step.fraud)
            else:
                _, h = engine.score(step.txns)
                engine.commit(step.txns, h, step.blocked)
            if n % 7 == 0:
                engine.sync()
                synced = n + 1
            if n == len(work.steps) - 5:
                print(synced, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert result.returncode == -signal.SIGKILL, result.stderr
    synced = int(result.stdout.strip())
    config = FeatureConfig(snapshot_every=200)
    work = generate(config, seed=14, rows=700)
    recovered = FeatureEngine.open(config, data_dir=tmp_path)
    expected = reference_engine(config, work.steps[:synced])
    assert recovered.stats()["applied"] == expected.stats()["applied"]
    assert np.array_equal(probe_features(recovered, work), probe_features(expected, work))
    assert os.path.exists(tmp_path / "FINGERPRINT")


def test_syncs_go_on_while_a_snapshot_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot is written on its own thread: syncs meanwhile make records durable, a crash before it is done
    recovers from the log alone, and once it is done the segments it covers are gone."""
    from features import _durability

    config = FeatureConfig(snapshot_every=0)
    work = generate(config, seed=19, rows=600)
    first, second = work.steps[:200], work.steps[200:]
    gate = threading.Event()
    real = _durability._write_snapshot

    def held(data_dir: Path, fingerprint: str, job: object) -> None:
        assert gate.wait(30)
        real(data_dir, fingerprint, job)  # type: ignore[arg-type]

    monkeypatch.setattr(_durability, "_write_snapshot", held)
    engine = FeatureEngine.open(config, data_dir=tmp_path / "live")
    feed(engine, first)
    engine.snapshot()
    assert engine.sync() > 0
    assert not engine.wait_for_snapshots(0.05)  # still held
    feed(engine, second)
    assert engine.sync() > 0  # not behind the snapshot
    shutil.copytree(tmp_path / "live", tmp_path / "crashed")  # what a crash now would leave
    assert not list((tmp_path / "crashed").glob("snap-*.npz"))
    assert len(list((tmp_path / "crashed").glob("log-*.opl"))) == 2  # cut where the snapshot ends
    expected = probe_features(reference_engine(config, work.steps), work)
    assert np.array_equal(probe_features(FeatureEngine.open(config, data_dir=tmp_path / "crashed"), work), expected)
    gate.set()
    assert engine.wait_for_snapshots(30)
    assert len(list((tmp_path / "live").glob("snap-*.npz"))) == 1
    assert len(list((tmp_path / "live").glob("log-*.opl"))) == 1  # the covered segment is deleted
    del engine  # abrupt stop: recovery from the snapshot and the segment after it
    assert np.array_equal(probe_features(FeatureEngine.open(config, data_dir=tmp_path / "live"), work), expected)


def test_a_failed_snapshot_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot that cannot be written (a full disk) is counted and logged; syncs and the log are unaffected."""
    from features import _durability

    def full_disk(data_dir: Path, fingerprint: str, job: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_durability, "_write_snapshot", full_disk)
    config = FeatureConfig(snapshot_every=0)
    work = generate(config, seed=23, rows=300)
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    feed(engine, work.steps[:100])
    engine.snapshot()
    feed(engine, work.steps[100:])
    assert engine.sync() > 0
    assert engine.wait_for_snapshots(30)
    assert engine.stats()["snapshot_failures"] == 1  # and so outpost_state_snapshot_failures
    del engine  # abrupt stop
    recovered = FeatureEngine.open(config, data_dir=tmp_path)
    assert np.array_equal(probe_features(recovered, work), probe_features(reference_engine(config, work.steps), work))


def test_a_snapshot_due_while_one_is_written_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No second copy of the state is taken while the writer still has one: on a slow disk they would pile up."""
    from features import _durability

    gate = threading.Event()
    written: list[int] = []
    real = _durability._write_snapshot

    def held(data_dir: Path, fingerprint: str, job: Any) -> None:
        assert gate.wait(30)
        written.append(job.covered)
        real(data_dir, fingerprint, job)

    monkeypatch.setattr(_durability, "_write_snapshot", held)
    config = FeatureConfig(snapshot_every=50)
    work = generate(config, seed=29, rows=900)
    engine = FeatureEngine.open(config, data_dir=tmp_path)
    steps = iter(work.steps)
    while engine.stats()["applied"] < 60:  # one snapshot comes due, is queued, then handed to the (held) writer
        feed(engine, [next(steps)])
    engine.sync()
    for step in steps:  # many more due; none is taken while the writer holds the first
        feed(engine, [step])
        engine.sync()
    gate.set()
    assert engine.wait_for_snapshots(30)
    assert len(written) == 1
    engine.close()  # the final snapshot
    assert len(written) == 2
    recovered = FeatureEngine.open(config, data_dir=tmp_path)
    assert np.array_equal(probe_features(recovered, work), probe_features(reference_engine(config, work.steps), work))
