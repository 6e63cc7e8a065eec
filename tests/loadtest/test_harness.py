"""The harness against the bare baseline server: open and closed loop, accounting, stalls, deadlines, the CLI."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest import (
    BaselineServer,
    LoadReport,
    LoadTestConfig,
    RequestPool,
    TargetError,
    frame_to_requests,
    run_load_test,
    simulated_transactions,
)
from loadtest.cli import main

REPORT_FIELDS = {
    "target", "baseline", "method", "mode", "offered_rate", "concurrency", "processes", "transactions_per_call",
    "duration_s", "warmup_s", "deadline_ms", "calls", "achieved_rate", "achieved_transactions_per_s", "latency_ms",
    "service_time_ms", "send_lag_ms", "errors_by_status", "actions", "degraded", "timeline", "latency_histogram_hdr",
}


@pytest.fixture(scope="module")
def pool() -> RequestPool:
    """Simulated transactions shared by the module's runs (the pool never repeats an id)."""
    return RequestPool(frame_to_requests(simulated_transactions(3000, seed=3)))


@pytest.fixture(scope="module")
def baseline() -> Iterator[BaselineServer]:
    """One bare server for the runs that need no stall."""
    with BaselineServer() as server:
        yield server


def _check_accounting(report: LoadReport) -> None:
    s = report.summary
    assert set(s) >= REPORT_FIELDS
    calls = s["calls"]
    assert calls["scheduled"] == calls["sent"] + calls["not_sent"]
    assert calls["sent"] == calls["ok"] + calls["errors"]
    assert calls["ok_within_window"] <= calls["ok"]
    assert sum(s["errors_by_status"].values()) == calls["errors"] + calls["not_sent"]
    assert report.latency_histogram.get_total_count() == calls["sent"]
    assert sum(s["actions"].values()) == calls["ok"] * s["transactions_per_call"]
    assert s["achieved_rate"] == pytest.approx(calls["ok_within_window"] / s["duration_s"])
    assert s["latency_ms"]["p50"] <= s["latency_ms"]["p99"] <= s["latency_ms"]["p99_9"] <= s["latency_ms"]["max"]
    assert sum(row["calls"] for row in s["timeline"]) == int(report.intended_s.size)


def test_open_loop_accounting_and_files(baseline: BaselineServer, pool: RequestPool, tmp_path: Path) -> None:
    """An open-loop run from two processes sends at the offered rate, adds up, and writes JSON and a plot."""
    config = LoadTestConfig(target=baseline.target, rate=200, duration_s=1.5, warmup_s=0.5, processes=2)
    report = run_load_test(config, pool, baseline=True)
    _check_accounting(report)
    calls = report.summary["calls"]
    assert calls["scheduled"] == pytest.approx(200 * 1.5, abs=2)
    assert calls["ok"] == calls["sent"] > 0
    assert report.achieved_rate <= 200
    assert report.summary["actions"] == {"ACTION_ALLOW": calls["ok"]}
    paths = report.write(tmp_path)
    assert json.loads(paths[0].read_text())["calls"] == calls
    assert paths[1].read_bytes()[:4] == b"\x89PNG"


def test_closed_loop_score_batch(baseline: BaselineServer, pool: RequestPool) -> None:
    """A closed-loop ScoreBatch run (payloads cycled) counts every transaction of every batch and the rate in them."""
    config = LoadTestConfig(
        target=baseline.target, concurrency=4, duration_s=1.0, warmup_s=0.3, processes=2,
        method="ScoreBatch", batch_size=5, cycle_payloads=True,
    )
    report = run_load_test(config, pool, max_rate=1)  # a few payloads, cycled: the baseline keeps no state
    _check_accounting(report)
    assert report.summary["payloads_exhausted"] is False
    assert report.summary["mode"] == "closed"
    assert report.summary["calls"]["ok"] > 0
    assert report.achieved_transactions_per_s == pytest.approx(5 * report.achieved_rate)


def test_open_loop_shows_a_stall_in_the_tail(pool: RequestPool) -> None:
    """A server that blocks once for 300 ms: every call due during the stall is late, so the tail shows it."""
    with BaselineServer(stall_after=150, stall_ms=300) as server:
        config = LoadTestConfig(target=server.target, rate=200, duration_s=1.5, warmup_s=0.5)
        report = run_load_test(config, pool)
    _check_accounting(report)
    # The stall falls ~0.75 s in, inside the window; from intended send times, the calls due in its first
    # half all waited at least 150 ms (about 30 of them), however fast the server is otherwise.
    slow = int(((report.latency_ms >= 150) & (report.intended_s >= 0.5)).sum())
    assert slow >= 20
    assert report.latency("max") >= 290
    assert report.latency("p99_9") >= 150


def test_deadline_errors_are_counted_by_status(pool: RequestPool) -> None:
    """Calls stuck behind a stall longer than the deadline are counted as DEADLINE_EXCEEDED errors."""
    with BaselineServer(stall_after=100, stall_ms=400) as server:
        config = LoadTestConfig(target=server.target, rate=200, duration_s=1.0, warmup_s=0.25, deadline_ms=100)
        report = run_load_test(config, pool)
    _check_accounting(report)
    assert report.summary["errors_by_status"].get("DEADLINE_EXCEEDED", 0) >= 1
    assert report.summary["calls"]["errors"] >= 1


def test_unreachable_target_fails_fast(pool: RequestPool) -> None:
    """A target nobody listens on raises TargetError instead of reporting a run."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        config = LoadTestConfig(target=f"127.0.0.1:{port}", concurrency=1, duration_s=0.5, warmup_s=0,
                                connect_timeout_s=1.0)
        with pytest.raises(TargetError, match="connect"):
            run_load_test(config, pool, max_rate=100)


def test_cli_baseline_run_writes_report(tmp_path: Path) -> None:
    """`outpost-loadtest --baseline` runs closed loop against its own bare server and writes report.json."""
    code = main(["--baseline", "--concurrency", "2", "--duration", "1", "--warmup", "0.2", "--out", str(tmp_path),
                 "--no-plot", "--max-rate", "2000"])
    assert code == 0
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["baseline"] is True
    assert summary["calls"]["ok"] > 0
    # The baseline keeps no state, so the CLI cycles a few payloads instead of building one per call.
    assert summary["payloads_exhausted"] is False
    assert 0 < summary["data_cursor_end"] <= summary["calls_total"]["sent"]


def test_cli_refuses_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid options exit with code 2 and a message naming the option."""
    assert main(["--target", "nohostport", "--rate", "10"]) == 2
    assert "--target" in capsys.readouterr().err
