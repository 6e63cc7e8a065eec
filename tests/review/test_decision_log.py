"""The decision log: every scored row written off the hot path, rotated, recovered, and read back with pandas."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from features import FEATURE_NAMES, stable_key
from review import (
    DecisionLog,
    DecisionLogConfig,
    DecisionLogError,
    RedisDecisionLog,
    account_key,
    read_decision_stream,
    read_decisions,
)
from review._worker import BackgroundWriter
from server import ScoringPipeline

from .conftest import HOUR_US, T0_US, make_batch


def _score(pipeline: ScoringPipeline, log: DecisionLog | RedisDecisionLog, batches: int, rows: int,
           prefix: str = "t", flush_each: bool = False) -> list[str]:
    pipeline.add_sink(log)
    ids: list[str] = []
    for b in range(batches):
        amounts = np.where(np.arange(rows) % 7 == 0, 80_000.0, 120.0)
        batch = make_batch(amounts, accounts=[f"a{b}-{i}" for i in range(rows)], start_us=T0_US + b * HOUR_US)
        batch_ids = [f"{prefix}{b}-{i}" for i in range(rows)]
        pipeline.run(batch, txn_ids=batch_ids)
        ids.extend(batch_ids)
        if flush_each:
            assert log.flush()
    return ids


def test_every_scored_row_is_logged_with_its_decision(pipeline: ScoringPipeline, tmp_path: Path) -> None:
    """Each row comes back once with its id, key (not the raw id), features, hits, risk and action."""
    log = DecisionLog(tmp_path / "decisions")
    pipeline.add_sink(log)
    batch = make_batch([80_000.0, 10.0, 60_000.0], accounts=["alice", "bob", "carol"])
    decisions = pipeline.run(batch, txn_ids=["x1", "x2", "x3"])
    log.close()
    frame = read_decisions(tmp_path / "decisions")
    assert frame["transaction_id"].tolist() == ["x1", "x2", "x3"]
    assert frame["account_key"].tolist() == [account_key(a) for a in ("alice", "bob", "carol")]
    assert "alice" not in frame.to_string()
    assert frame["risk"].tolist() == decisions.risk.tolist()
    assert frame["action"].tolist()[:2] == ["REVIEW", "ALLOW"]
    assert [list(h) for h in frame["rule_hits"]] == [["BIG_AMOUNT"], [], ["BIG_AMOUNT"]]
    features = frame[[f"f_{name}" for name in FEATURE_NAMES]].to_numpy()
    np.testing.assert_array_equal(features, decisions.features)
    assert frame["event_time"].iloc[0] == pd.Timestamp(T0_US, unit="us", tz="UTC")
    assert frame["txn_type"].iloc[0] == "TRANSFER_OUT" and frame["channel"].iloc[0] == "MOBILE"
    assert frame["model_probability"].isna().all() and frame["degraded"].all()  # no model in this snapshot
    assert (frame["ruleset_version"] == pipeline.snapshot.rules.version).all()


def test_shadow_hits_are_logged_apart_from_active_hits(pipeline: ScoringPipeline, tmp_path: Path) -> None:
    """A night-time row hits the shadow rule: it appears in shadow_hits, never in rule_hits."""
    log = DecisionLog(tmp_path / "decisions")
    pipeline.add_sink(log)
    night = T0_US - (T0_US % (24 * HOUR_US)) + 24 * HOUR_US - 6 * HOUR_US  # 02:00 in UTC+8
    pipeline.run(make_batch([70_000.0], accounts=["owl"], start_us=night), txn_ids=["n1"])
    log.close()
    row = read_decisions(tmp_path / "decisions").iloc[0]
    assert list(row["shadow_hits"]) == ["NIGHT_SHADOW"]
    assert list(row["rule_hits"]) == ["BIG_AMOUNT"]


def test_dry_runs_are_logged_and_flagged(pipeline: ScoringPipeline, tmp_path: Path) -> None:
    """A what-if score is in the log with dry_run true."""
    log = DecisionLog(tmp_path / "decisions")
    pipeline.add_sink(log)
    pipeline.run(make_batch([10.0], accounts=["what-if"], apply=0), txn_ids=["d1"])
    log.close()
    assert read_decisions(tmp_path / "decisions")["dry_run"].tolist() == [True]


def test_rotation_by_size_seals_parquet_parts_that_pandas_reads(pipeline: ScoringPipeline, tmp_path: Path) -> None:
    """Small segments rotate into several Parquet parts; pd.read_parquet on the directory sees every row in order."""
    directory = tmp_path / "decisions"
    log = DecisionLog(directory, DecisionLogConfig(max_segment_bytes=64 * 1024, linger_seconds=0.0))
    ids = _score(pipeline, log, batches=12, rows=50, flush_each=True)  # one write per batch
    log.close()
    parts = sorted(directory.glob("decisions-*.parquet"))
    assert len(parts) >= 3
    assert not list(directory.glob(".active-*"))
    assert pd.read_parquet(directory)["transaction_id"].tolist() == ids
    assert read_decisions(directory)["transaction_id"].tolist() == ids


def test_segments_are_sealed_where_files_cannot_be_memory_mapped(
    pipeline: ScoringPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that refuses mmap still gets its Parquet parts: the segment is read into memory instead."""
    import pyarrow as pa

    def refuse(path: str, mode: str = "r") -> pa.MemoryMappedFile:
        raise OSError(19, "No such device", path)

    monkeypatch.setattr(pa, "memory_map", refuse)
    directory = tmp_path / "decisions"
    log = DecisionLog(directory, DecisionLogConfig(max_segment_bytes=64 * 1024, linger_seconds=0.0))
    ids = _score(pipeline, log, batches=6, rows=50, flush_each=True)
    log.close()
    assert len(list(directory.glob("decisions-*.parquet"))) >= 2
    assert pd.read_parquet(directory)["transaction_id"].tolist() == ids


def test_active_segment_is_readable_before_close(pipeline: ScoringPipeline, tmp_path: Path) -> None:
    """After flush() the rows of the segment still being written are visible to readers."""
    directory = tmp_path / "decisions"
    log = DecisionLog(directory)
    ids = _score(pipeline, log, batches=2, rows=5)
    assert log.flush()
    assert list(directory.glob(".active-*.arrows"))
    assert read_decisions(directory)["transaction_id"].tolist() == ids
    log.close()


def test_a_crashed_segment_is_recovered_up_to_its_last_complete_batch(
    pipeline: ScoringPipeline, tmp_path: Path
) -> None:
    """A segment cut in the middle of a message (crash) keeps its complete batches when the log opens again."""
    directory = tmp_path / "decisions"
    log = DecisionLog(directory, DecisionLogConfig(linger_seconds=0.0))
    pipeline.add_sink(log)
    pipeline.run(make_batch([10.0] * 4, accounts=[f"c{i}" for i in range(4)]), txn_ids=["c0", "c1", "c2", "c3"])
    assert log.flush()
    active = next(directory.glob(".active-*.arrows"))
    complete = active.stat().st_size
    pipeline.run(make_batch([20.0] * 3, accounts=[f"d{i}" for i in range(3)], start_us=T0_US + HOUR_US),
                 txn_ids=["d0", "d1", "d2"])
    assert log.flush()
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    copy = crashed / active.name
    shutil.copyfile(active, copy)
    with copy.open("r+b") as fh:  # the second message only half written
        fh.truncate(complete + (copy.stat().st_size - complete) // 2)
    log.close()
    reopened = DecisionLog(crashed)
    assert reopened.recovered_rows == 4
    reopened.close()
    assert read_decisions(crashed)["transaction_id"].tolist() == ["c0", "c1", "c2", "c3"]
    assert not list(crashed.glob(".active-*"))


def test_an_empty_crashed_segment_is_removed_without_error(tmp_path: Path) -> None:
    """A segment a crash left with no bytes at all (not even the schema) recovers no rows and is removed."""
    directory = tmp_path / "decisions"
    directory.mkdir()
    (directory / ".active-20261127T000000000000Z-1-00001.arrows").touch()
    reopened = DecisionLog(directory)
    assert reopened.recovered_rows == 0
    reopened.close()
    assert not list(directory.glob(".active-*"))
    assert not list(directory.glob("*.parquet"))


def test_read_decisions_filters_by_event_time(pipeline: ScoringPipeline, tmp_path: Path) -> None:
    """start <= event_time < end, with naive times read as UTC."""
    log = DecisionLog(tmp_path / "decisions")
    ids = _score(pipeline, log, batches=3, rows=2)
    log.close()
    start = pd.Timestamp(T0_US + HOUR_US, unit="us")
    end = pd.Timestamp(T0_US + 2 * HOUR_US, unit="us")
    frame = read_decisions(tmp_path / "decisions", start=start, end=end)
    assert frame["transaction_id"].tolist() == ids[2:4]


def test_read_decisions_names_a_missing_directory(tmp_path: Path) -> None:
    """Reading a directory that does not exist says what to pass instead."""
    with pytest.raises(DecisionLogError, match="decision-log directory"):
        read_decisions(tmp_path / "nope")


def test_writer_drops_and_counts_beyond_its_row_budget() -> None:
    """With overflow="drop" a full queue drops new items (counted) instead of blocking the caller."""
    release = threading.Event()
    written: list[int] = []

    def consume(items: list[int]) -> None:
        release.wait(10)
        written.extend(items)

    writer: BackgroundWriter[int] = BackgroundWriter("t", consume, max_pending_rows=10, overflow="drop",
                                                     linger_seconds=0.0)
    assert writer.submit(1, 6)
    assert writer.submit(2, 4)
    assert not writer.submit(3, 5)
    release.set()
    assert writer.flush(10)
    writer.close()
    stats = writer.stats()
    assert written == [1, 2]
    assert (stats.written_rows, stats.dropped_rows, stats.pending_rows) == (10, 5, 0)


def test_writer_blocks_the_caller_when_asked_and_loses_nothing() -> None:
    """With overflow="block" submit waits for room, and every item is written in order."""
    release = threading.Event()
    written: list[int] = []

    def consume(items: list[int]) -> None:
        release.wait(10)
        written.extend(items)

    writer: BackgroundWriter[int] = BackgroundWriter("t", consume, max_pending_rows=4, overflow="block",
                                                     linger_seconds=0.0)
    done = threading.Event()

    def producer() -> None:
        for item in range(6):
            writer.submit(item, 2)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.3)  # stuck behind the writer
    release.set()
    thread.join(10)
    assert writer.flush(10)
    writer.close()
    assert written == list(range(6)) and writer.stats().dropped_rows == 0


def test_writer_retries_a_failed_write() -> None:
    """A write that fails is retried; the error is counted and nothing is lost."""
    calls: list[list[int]] = []

    def consume(items: list[int]) -> None:
        calls.append(list(items))
        if len(calls) == 1:
            raise OSError("disk full")

    writer: BackgroundWriter[int] = BackgroundWriter("t", consume, max_pending_rows=100, overflow="drop",
                                                     linger_seconds=0.0)
    writer.submit(7, 1)
    assert writer.flush(10)
    writer.close()
    assert calls[-1] == [7] and writer.stats().errors == 1 and writer.stats().written_rows == 1


@pytest.mark.redis
def test_redis_stream_holds_the_same_rows(pipeline: ScoringPipeline, redis_url: str) -> None:
    """The Redis variant appends Arrow batches with XADD; the stream reads back as the same DataFrame."""
    stream = "test:decisions:same"
    log = RedisDecisionLog(redis_url, stream=stream)
    ids = _score(pipeline, log, batches=4, rows=6, prefix="r")
    log.close()
    frame = read_decision_stream(redis_url, stream=stream, page=2)
    assert frame["transaction_id"].tolist() == ids
    assert frame["account_key"].iloc[0] == f"{stable_key('a0-0'):016x}"
    assert [list(h) for h in frame["rule_hits"]][:2] == [["BIG_AMOUNT"], []]


@pytest.mark.redis
def test_redis_stream_is_capped_with_maxlen(pipeline: ScoringPipeline, redis_url: str) -> None:
    """XADD MAXLEN ~ keeps the stream near its cap however much is written."""
    stream = "test:decisions:capped"
    log = RedisDecisionLog(redis_url, stream=stream, max_entries=10, rows_per_entry=1,
                           config=DecisionLogConfig(linger_seconds=0.0))
    _score(pipeline, log, batches=30, rows=20, prefix="m")
    log.close()
    client = redis.Redis.from_url(redis_url)
    length = client.xlen(stream)
    client.close()
    assert 10 <= length < 600  # approximate trimming removes whole macro nodes (~100 entries)


@pytest.mark.redis
def test_redis_errors_say_where_and_what_to_check() -> None:
    """An unreachable Redis is a DecisionLogError naming the URL."""
    with pytest.raises(DecisionLogError, match=re.escape("redis://127.0.0.1:1/0")):
        RedisDecisionLog("redis://127.0.0.1:1/0")
