"""Scripted overload check: does load shedding keep accepted calls fast at three times the sustainable rate?

Starts ``outpost serve`` (one worker, embedded state, durability fsync unless told otherwise), measures its
capacity with a closed-loop client and the server CPU time of an answered and of a refused call, then for each
``OUTPOST_MAX_IN_FLIGHT`` value: a light open-loop run (the unloaded p99), an open-loop run at three times the
capacity, and a light run again right after (recovery). Latency is measured from each call's intended send time
(loadtest's open loop), so client lag shows. On a small machine pin server and clients to different CPUs
(``--server-cpus 0 --client-cpus 1``), or the clients take the server's CPU.

Prints the figures and exits 0 when, for the first value of ``--max-in-flight`` (default: the shipped default),
accepted calls keep p99 <= 2x the unloaded p99 under overload and the service recovers (no errors and p99 <= 2x
unloaded in the run after); 1 otherwise. Run from the repository root::

    .venv/bin/python ops/checks/overload.py                      # the shipped default
    .venv/bin/python ops/checks/overload.py --max-in-flight 16,32,64,256 --duration 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from _process import OutpostProcess

from loadtest import LoadReport, LoadTestConfig, RequestPool, frame_to_requests, run_load_test, simulated_transactions
from server import Settings

__all__ = ["main"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    """One open-loop run: offered rate, accepted-call latency, outcome counts."""

    offered_per_s: float
    ok_per_s: float
    accepted_p50_ms: float
    accepted_p99_ms: float
    shed: int
    other_errors: int
    client_lag_p99_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The three phases for one OUTPOST_MAX_IN_FLIGHT value, and whether the targets hold."""

    max_in_flight: int
    unloaded: Phase
    overload: Phase
    recovery: Phase
    recovery_first_second_p99_ms: float

    @property
    def overload_ratio(self) -> float:
        return self.overload.accepted_p99_ms / self.unloaded.accepted_p99_ms

    @property
    def recovery_ratio(self) -> float:
        return self.recovery.accepted_p99_ms / self.unloaded.accepted_p99_ms

    @property
    def passed(self) -> bool:
        return self.overload_ratio <= 2.0 and self.recovery_ratio <= 2.0 and self.recovery.other_errors == 0 \
            and self.recovery.shed == 0


def _phase(report: LoadReport) -> Phase:
    s = report.summary
    start, end = float(s["warmup_s"]), float(s["warmup_s"]) + float(s["duration_s"])
    window = (report.intended_s >= start) & (report.intended_s < end)
    ok = window & (report.status == 0)
    latency = report.latency_ms[ok]
    errors = dict(s["errors_by_status"])
    shed = int(errors.pop("RESOURCE_EXHAUSTED", 0))
    lag = s["send_lag_ms"] or {}
    return Phase(
        offered_per_s=float(s["offered_rate"] or 0.0),
        ok_per_s=float(s["achieved_rate"]),
        accepted_p50_ms=float(np.percentile(latency, 50)) if latency.size else math.nan,
        accepted_p99_ms=float(np.percentile(latency, 99)) if latency.size else math.nan,
        shed=shed,
        other_errors=int(sum(errors.values())),
        client_lag_p99_ms=float(lag.get("p99", math.nan)),
    )


def _open(target: str, pool: RequestPool, rate: float, args: argparse.Namespace) -> LoadReport:
    config = LoadTestConfig(target=target, rate=rate, duration_s=args.duration, warmup_s=args.warmup,
                            processes=args.processes, deadline_ms=args.deadline_ms)
    return run_load_test(config, pool, label=f"open {rate:.0f}/s")


def _closed(
    server: OutpostProcess, pool: RequestPool, args: argparse.Namespace, concurrency: int
) -> tuple[float, float]:
    """(OK calls/s, server CPU microseconds per call) of a closed-loop run."""
    config = LoadTestConfig(target=server.target, concurrency=concurrency, duration_s=args.duration,
                            warmup_s=args.warmup, processes=args.processes, deadline_ms=args.deadline_ms)
    before = server.cpu_seconds()
    report = run_load_test(config, pool, max_rate=args.max_rate, label=f"closed {concurrency}")
    calls = max(int(report.summary["calls_total"]["sent"]), 1)
    return float(report.achieved_rate), (server.cpu_seconds() - before) / calls * 1e6


def _env(args: argparse.Namespace, max_in_flight: int) -> dict[str, str]:
    extra = dict(item.split("=", 1) for item in args.server_env)
    return {"OUTPOST_DURABILITY": args.durability, **extra, "OUTPOST_MAX_IN_FLIGHT": str(max_in_flight)}


def _cpus(text: str) -> set[int] | None:
    return {int(c) for c in text.split(",") if c.strip()} or None


def run(args: argparse.Namespace) -> tuple[dict[str, float], list[Verdict]]:
    """Capacity (calls/s) and one verdict per OUTPOST_MAX_IN_FLIGHT value."""
    server_cpus, client_cpus = _cpus(args.server_cpus), _cpus(args.client_cpus)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)  # the client processes are spawned from here and inherit it
    frame = simulated_transactions(args.rows, seed=11)
    pool = RequestPool(frame_to_requests(frame))
    verdicts: list[Verdict] = []
    with tempfile.TemporaryDirectory(prefix="outpost-overload-") as tmp:
        # Capacity with no shedding in the way: as many in flight as the closed-loop client keeps.
        with OutpostProcess(Path(tmp) / "capacity", _env(args, 100_000), cpus=server_cpus) as server:
            _closed(server, pool, argparse.Namespace(**{**vars(args), "duration": 3.0}), args.concurrency)  # warm
            capacity, served_us = _closed(server, pool, args, args.concurrency)
        print(f"capacity (closed loop, {args.concurrency} in flight): {capacity:.0f} calls/s, "
              f"server CPU {served_us:.0f} us per answered call", flush=True)
        # What refusing costs: a server that admits one call at a time, under many more.
        with OutpostProcess(Path(tmp) / "refusing", _env(args, 1), cpus=server_cpus) as server:
            _, refused_us = _closed(server, pool, args, 4 * args.concurrency)
        ratio = refused_us / served_us
        print(f"server CPU per refused call (RESOURCE_EXHAUSTED): {refused_us:.0f} us = {ratio:.2f} x an answered "
              f"call; refusing alone saturates one worker at {1 / ratio:.1f} x its capacity", flush=True)
        light, heavy = max(20.0, capacity * args.light_fraction), capacity * args.factor
        for m in args.max_in_flight:
            with OutpostProcess(Path(tmp) / f"mif-{m}", _env(args, m), cpus=server_cpus) as server:
                _open(server.target, pool, light, argparse.Namespace(**{**vars(args), "duration": 3.0}))  # warm-up
                unloaded = _open(server.target, pool, light, args)
                overload = _open(server.target, pool, heavy, args)
                recovery = _open(server.target, pool, light, args)
            first = recovery.summary["timeline"][int(args.warmup)] if recovery.summary["timeline"] else {}
            verdict = Verdict(max_in_flight=m, unloaded=_phase(unloaded), overload=_phase(overload),
                              recovery=_phase(recovery),
                              recovery_first_second_p99_ms=float(first.get("p99_ms", math.nan)))
            verdicts.append(verdict)
            print(_line(verdict), flush=True)
    figures = {"capacity_calls_per_s": capacity, "server_cpu_us_per_answered_call": served_us,
               "server_cpu_us_per_refused_call": refused_us, "refusal_cost_ratio": ratio}
    return figures, verdicts


def _line(v: Verdict) -> str:
    o, u, r = v.overload, v.unloaded, v.recovery
    return (
        f"max_in_flight={v.max_in_flight:>6}: unloaded p99 {u.accepted_p99_ms:7.2f} ms | "
        f"overload {o.offered_per_s:6.0f}/s offered, {o.ok_per_s:6.0f}/s ok, {o.shed} shed, "
        f"{o.other_errors} other errors, accepted p50 {o.accepted_p50_ms:.2f} p99 {o.accepted_p99_ms:.2f} ms "
        f"({v.overload_ratio:.2f}x), client lag p99 {o.client_lag_p99_ms:.1f} ms | recovery p99 "
        f"{r.accepted_p99_ms:.2f} ms ({v.recovery_ratio:.2f}x), {r.shed + r.other_errors} errors | "
        f"{'PASS' if v.passed else 'FAIL'}"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="overload.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--max-in-flight", default=str(Settings().max_in_flight),
                   help="comma-separated OUTPOST_MAX_IN_FLIGHT values; the first decides the exit code")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per run (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run (default 2)")
    p.add_argument("--processes", type=int, default=2, help="client processes (default 2)")
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight when measuring capacity")
    p.add_argument("--factor", type=float, default=3.0, help="overload = factor x capacity (default 3)")
    p.add_argument("--light-fraction", type=float, default=0.1,
                   help="unloaded and recovery runs offer this fraction of the capacity (default 0.1)")
    p.add_argument("--deadline-ms", type=float, default=2000.0, help="deadline of every call (default 2000)")
    p.add_argument("--durability", default="fsync", choices=("fsync", "write", "none"))
    p.add_argument("--rows", type=int, default=60_000, help="simulated transactions (replayed if used up)")
    p.add_argument("--max-rate", type=float, default=8_000.0, help="closed loop: highest rate expected, calls/s")
    p.add_argument("--server-env", action="append", default=[], metavar="OUTPOST_X=VALUE",
                   help="another setting for the server under test (repeatable), e.g. OUTPOST_BATCH_WAIT_US=2000")
    p.add_argument("--server-cpus", default="", metavar="0", help="pin the server to these CPUs (e.g. 0)")
    p.add_argument("--client-cpus", default="", metavar="1", help="pin the load-test clients to these CPUs (e.g. 1)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.max_in_flight = [int(v) for v in str(args.max_in_flight).split(",") if v.strip()]
    figures, verdicts = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps({
            **figures,
            "verdicts": [{**asdict(v), "overload_ratio": v.overload_ratio, "recovery_ratio": v.recovery_ratio,
                          "passed": v.passed} for v in verdicts],
        }, indent=2), encoding="utf-8")
    first = verdicts[0]
    print(f"result for OUTPOST_MAX_IN_FLIGHT={first.max_in_flight}: {'PASS' if first.passed else 'FAIL'} "
          f"(accepted p99 under {args.factor:g}x load = {first.overload_ratio:.2f}x unloaded, target <= 2x)")
    return 0 if first.passed else 1


if __name__ == "__main__":
    sys.exit(main())
