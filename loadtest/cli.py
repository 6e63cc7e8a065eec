"""``outpost-loadtest``: drive a running Outpost (or the bare baseline server) and report latency and throughput."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtest._baseline import BaselineServer
from loadtest._config import LoadTestConfig
from loadtest._data import load_transactions, simulated_transactions
from loadtest._errors import LoadTestError
from loadtest._health import wait_serving
from loadtest._report import LoadReport
from loadtest._requests import RequestPool, frame_to_requests
from loadtest._runner import closed_loop_calls

__all__ = ["main"]

_EPILOG = """examples:
  outpost-loadtest --baseline --concurrency 32 --duration 10          # the bare gRPC limit of this machine
  outpost-loadtest --target 127.0.0.1:50051 --rate 2000 --duration 60 --processes 2 --out run1
  outpost-loadtest --target 127.0.0.1:50051 --concurrency 4 --method ScoreBatch --batch-size 500
See docs/loadtest.md for sizing a deployment."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="outpost-loadtest",
        description="Send simulated (or your own) transactions to Outpost at a constant rate (open loop) or with "
        "a fixed number of calls in flight (closed loop); report latency percentiles, achieved rate, errors and "
        "actions as JSON and a plot.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", metavar="HOST:PORT", help="a running Outpost")
    where.add_argument("--baseline", action="store_true",
                       help="start a bare grpc.aio server with the same proto (fixed answer) and target it")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float, metavar="R", help="open loop: calls per second offered, constant")
    load.add_argument("--concurrency", type=int, metavar="C", help="closed loop: calls kept in flight")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="measured seconds (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, metavar="S", help="unmeasured seconds first (default 2)")
    p.add_argument("--processes", type=int, default=1, metavar="P",
                   help="client processes, so the client is not the bottleneck (default 1)")
    p.add_argument("--method", choices=("Score", "ScoreBatch"), default="Score")
    p.add_argument("--batch-size", type=int, default=100, help="transactions per ScoreBatch call (default 100)")
    p.add_argument("--deadline-ms", type=float, default=2000.0, help="gRPC deadline of each call (default 2000)")
    p.add_argument("--data", type=Path, metavar="FILE",
                   help="canonical transaction CSV/Parquet (default: simulated, a realistic mix with fraud bursts)")
    p.add_argument("--mapping", type=Path, metavar="FILE",
                   help="JSON/YAML column mapping for --data (canonical column -> your column), as for training")
    p.add_argument("--skip", type=int, default=0, metavar="N",
                   help="start after the first N transactions of the data (use the previous run's data_cursor_end "
                        "when running again against the same server, so transaction ids stay unique)")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    p.add_argument("--fraud-scale", type=float, default=1.0, help="simulation: multiplies fraud prevalence")
    p.add_argument("--locale", default="zh-CN", help="locale of every request (zh-CN or en)")
    p.add_argument("--max-rate", type=float, metavar="R",
                   help="closed loop: highest calls/s you expect; sizes the pre-built payloads (default: what a "
                        "Python client process can send)")
    p.add_argument("--out", type=Path, default=Path("loadtest-out"), metavar="DIR",
                   help="where report.json and latency.png go (default ./loadtest-out)")
    p.add_argument("--no-plot", action="store_true", help="write report.json only")
    return p


def _summary_lines(report: LoadReport) -> list[str]:
    s = report.summary
    lat = s["latency_ms"]
    calls = s["calls"]
    offered = f"offered {s['offered_rate']:g}/s, " if s["offered_rate"] else f"{s['concurrency']} in flight, "
    lines = [
        f"{s['method']} -> {s['target']}{' (baseline)' if s['baseline'] else ''}: {s['mode']} loop, {offered}"
        f"achieved {s['achieved_rate']:.1f} calls/s ({s['achieved_transactions_per_s']:.0f} transactions/s)",
        f"latency ms: p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  "
        f"p99.9 {lat['p99_9']:.3f}  max {lat['max']:.3f}",
        f"calls: {calls['sent']} sent, {calls['ok']} ok, {calls['errors']} errors, {calls['not_sent']} not sent"
        + (f"  errors by status: {s['errors_by_status']}" if s["errors_by_status"] else ""),
        f"actions: {s['actions']}" + (f"  degraded: {s['degraded']}" if s["degraded"] else ""),
    ]
    if s["send_lag_ms"] is not None:
        lag = s["send_lag_ms"]
        lines.append(f"client send lag ms: p50 {lag['p50']:.3f}  p99 {lag['p99']:.3f}  max {lag['max']:.3f}")
    if s["payloads_exhausted"]:
        lines.append("warning: the pre-built payloads ran out before the end; rerun with a higher --max-rate")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run one load test from command-line arguments; 0 on success, 2 on a usage or setup error."""
    ns = _parser().parse_args(argv)
    baseline: BaselineServer | None = None
    try:
        if ns.baseline:
            baseline = BaselineServer().start()
            target = baseline.target
        else:
            target = ns.target
        config = LoadTestConfig(
            target=target, rate=ns.rate, concurrency=ns.concurrency, duration_s=ns.duration,
            warmup_s=ns.warmup, processes=ns.processes, deadline_ms=ns.deadline_ms, method=ns.method,
            batch_size=ns.batch_size, cycle_payloads=baseline is not None,
        )
        if baseline is None:
            wait_serving(target, timeout_s=10.0)
        per_call = config.transactions_per_call
        if config.rate is not None:
            calls = math.ceil(config.rate * (config.warmup_s + config.duration_s)) + config.processes
        else:
            calls = closed_loop_calls(config, ns.max_rate)
        # Simulate what the run needs (capped: the pool replays later rounds with fresh ids when it runs out).
        frame = load_transactions(ns.data, mapping=ns.mapping) if ns.data else simulated_transactions(
            min(calls * per_call, 300_000), seed=ns.seed, fraud_scale=ns.fraud_scale)
        pool = RequestPool(frame_to_requests(frame, locale=ns.locale))
        pool.skip(ns.skip)
        from loadtest._runner import run_load_test

        report = run_load_test(config, pool, max_rate=ns.max_rate, baseline=baseline is not None)
        report.summary["data_cursor_end"] = pool.handed_out
        report.summary["data_source"] = str(ns.data) if ns.data else f"simulated (seed {ns.seed})"
        written = report.write(ns.out, plot=not ns.no_plot)
    except LoadTestError as exc:
        print(f"outpost-loadtest: {exc}", file=sys.stderr)
        return 2
    finally:
        if baseline is not None:
            baseline.stop()
    print("\n".join(_summary_lines(report)))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
