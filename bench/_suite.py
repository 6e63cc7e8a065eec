"""The side-by-side measurements: Outpost and the bare gRPC server under the same load, interleaved run by run.

All servers run at once (an idle server costs nothing) and every repetition runs each server in
turn, so drifting background load on a shared machine hits all of them alike. Each figure is the
median of ``runs`` repetitions; server CPU time is read from /proc around every run.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from outpost.v1 import outpost_pb2 as pb
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from bench._service import OutpostServer, process_tree_cpu_seconds, process_tree_main_thread_cpu_seconds
from loadtest import BaselineServer, LoadReport, LoadTestConfig, LoadTestError, RequestPool, run_load_test

__all__ = ["Figures", "SuiteConfig", "SuiteResult", "median_of", "run_suite"]

BARE = "bare"
OUTPOST = "outpost"  # the shipped defaults: durability fsync
OUTPOST_WRITE = "outpost (durability=write)"
OUTPOST_NONE = "outpost (durability=none)"
OUTPOST_WAIT = "outpost (batch_wait_us=0)"
IDLE_SHARE_LIMIT = 0.05  # of a core: more than this while idle means something polls
# The Outpost servers measured, by name, with their OUTPOST_* settings (without the prefix).
OUTPOST_VARIANTS: tuple[tuple[str, dict[str, str]], ...] = (
    (OUTPOST, {}),
    (OUTPOST_WRITE, {"DURABILITY": "write"}),
    (OUTPOST_NONE, {"DURABILITY": "none"}),
    (OUTPOST_WAIT, {"BATCH_WAIT_US": "0"}),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteConfig:
    """How long and how often to measure."""

    quick: bool = False
    runs: int = 3
    duration_s: float = 8.0
    warmup_s: float = 2.0
    saturation_concurrency: int = 32
    few_concurrency: int = 4  # a payment gateway's few calls in flight: not a target, but where batching must not cost
    client_processes: int = 2  # one Python client process cannot saturate even the bare server
    batch_size: int = 500
    batch_concurrency: int = 2
    batch_duration_s: float = 4.0
    cold_starts: int = 3
    pool_rows: int = 200_000

    @classmethod
    def for_mode(cls, *, quick: bool, runs: int | None = None) -> SuiteConfig:
        """The full suite, or a short one (one run each, short windows) with ``quick``."""
        if quick:
            return cls(quick=True, runs=runs or 1, duration_s=2.0, warmup_s=0.7, batch_duration_s=1.5,
                       cold_starts=1, pool_rows=40_000)
        return cls(runs=runs or 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """One run against one server."""

    achieved_rate: float  # calls/s completed OK in the window
    transactions_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p99_9_ms: float
    max_ms: float
    errors: int
    errors_by_status: dict[str, int]
    server_cpu_s: float  # over the whole run, warm-up and drain included
    server_main_thread_cpu_s: float  # the part of it on the servers' main threads (their event loops)
    calls_ok_total: int  # over the whole run
    transactions_ok_total: int
    payloads_exhausted: bool
    send_lag_p99_ms: float

    @property
    def server_cpu_us_per_call(self) -> float:
        """Server CPU time per answered call (all of the run)."""
        return self.server_cpu_s * 1e6 / self.calls_ok_total if self.calls_ok_total else float("nan")

    @property
    def server_cpu_us_per_transaction(self) -> float:
        """Server CPU time per answered transaction (all of the run)."""
        return self.server_cpu_s * 1e6 / self.transactions_ok_total if self.transactions_ok_total else float("nan")

    @property
    def main_thread_us_per_transaction(self) -> float:
        """Server CPU time per answered transaction on the event loop's thread; the rest is the other threads'."""
        if not self.transactions_ok_total:
            return float("nan")
        return self.server_main_thread_cpu_s * 1e6 / self.transactions_ok_total

    @property
    def transactions_per_cpu_s(self) -> float:
        """Transactions answered per second of server CPU: throughput per fully used core."""
        return self.transactions_ok_total / self.server_cpu_s if self.server_cpu_s > 0 else float("nan")


def _figures(report: LoadReport, server_cpu_s: float, main_thread_cpu_s: float) -> Figures:
    s = report.summary
    lat = s["latency_ms"]
    ok_total = int(s["calls_total"]["ok"])
    lag = s["send_lag_ms"]
    return Figures(
        achieved_rate=report.achieved_rate,
        transactions_per_s=report.achieved_transactions_per_s,
        p50_ms=lat["p50"],
        p90_ms=lat["p90"],
        p99_ms=lat["p99"],
        p99_9_ms=lat["p99_9"],
        max_ms=lat["max"],
        errors=report.errors,
        errors_by_status=dict(s["errors_by_status"]),
        server_cpu_s=server_cpu_s,
        server_main_thread_cpu_s=main_thread_cpu_s,
        calls_ok_total=ok_total,
        transactions_ok_total=ok_total * int(s["transactions_per_call"]),
        payloads_exhausted=bool(s["payloads_exhausted"]),
        send_lag_p99_ms=float(lag["p99"]) if lag else float("nan"),
    )


def median_of(runs: Sequence[Figures], attribute: str) -> float:
    """Median of one figure (a field or property of ``Figures``) over repeated runs."""
    values = [float(getattr(run, attribute)) for run in runs]
    return statistics.median(values) if values else float("nan")


@dataclass(slots=True, kw_only=True)
class Scenario:
    """One load shape measured on several servers: runs per server name."""

    title: str
    load: str  # e.g. "closed loop, 32 in flight"
    runs: dict[str, list[Figures]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    load_average: tuple[float, float] = (float("nan"), float("nan"))  # 1-minute load at start and end


@dataclass(slots=True, kw_only=True)
class SuiteResult:
    """Everything measured; rendered by ``bench._markdown``."""

    config: SuiteConfig
    saturation: Scenario | None = None
    one_in_flight: Scenario | None = None
    few_in_flight: Scenario | None = None
    open_loop: Scenario | None = None
    open_loop_rate: float = float("nan")
    open_loop_own: Scenario | None = None  # at half Outpost's own saturation rate
    open_loop_own_rate: float = float("nan")
    batch: Scenario | None = None
    cold_start_s: list[float] = field(default_factory=list)
    # Open loop at FIRST_SECOND_RATE from the moment a fresh server is SERVING: (p50, p99, max) ms per start.
    first_second_ms: list[tuple[float, float, float]] = field(default_factory=list)
    cold_start_empty_cache_s: float = float("nan")
    restart_with_state_s: float = float("nan")
    restart_transactions: int = 0
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    outpost_error: str = ""
    notes: list[str] = field(default_factory=list)
    idle_cpu_share: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Server:
    name: str
    target: str
    pid: int
    pool: RequestPool
    outpost: OutpostServer | None = None  # None for the bare server
    idle_share: float = 0.0  # of a core, measured when SERVING with nothing to do


def _idle(server: _Server) -> float:
    assert server.outpost is not None
    time.sleep(0.5)  # let start-up work (first snapshot, log open) finish
    return server.outpost.idle_cpu_share(2.0)


def _status(target: str) -> Any:
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.RiskAdminStub(channel).GetStatus(pb.GetStatusRequest(), timeout=5)


class _Suite:
    def __init__(self, config: SuiteConfig, requests: list[pb.ScoreRequest], log: Callable[[str], None]) -> None:
        self.config = config
        self.requests = requests
        self.log = log
        self.unsettled: list[str] = []
        self.servers: list[_Server] = []

    def isolate(self, server: _Server) -> None:
        """Only the server under test runs: every other Outpost is stopped (SIGSTOP) so that its background
        threads take no CPU from this run; the bare server has no background work."""
        for other in self.servers:
            if other.outpost is not None and other is not server and not other.outpost.paused:
                other.outpost.pause()
        if server.outpost is not None and server.outpost.paused:
            server.outpost.resume()

    def settle(self, server: _Server, *, timeout_s: float = 30.0) -> None:
        """Wait until the server is idle: calls left over from an overloaded run must not slow the next one."""
        threshold = 0.1 + 1.5 * server.idle_share  # "idle" as measured when it had just started
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            before = process_tree_cpu_seconds(server.pid)
            time.sleep(0.5)
            if process_tree_cpu_seconds(server.pid) - before < threshold * 0.5:
                return
        self.log(f"  {server.name} still busy {timeout_s:.0f} s after its previous run; measuring anyway")
        self.unsettled.append(server.name)

    def measure(self, server: _Server, load: LoadTestConfig, max_rate: float | None) -> Figures:
        self.isolate(server)
        self.settle(server)
        cpu_before = process_tree_cpu_seconds(server.pid)
        main_before = process_tree_main_thread_cpu_seconds(server.pid)
        report = run_load_test(load, server.pool, max_rate=max_rate, label=server.name)
        figures = _figures(report, process_tree_cpu_seconds(server.pid) - cpu_before,
                           process_tree_main_thread_cpu_seconds(server.pid) - main_before)
        self.log(
            f"  {server.name:<28} {figures.achieved_rate:9.1f} calls/s  p50 {figures.p50_ms:7.3f}  "
            f"p99 {figures.p99_ms:7.3f} ms  errors {figures.errors}  server CPU {figures.server_cpu_us_per_call:7.1f} "
            f"us/call"
        )
        return figures

    def scenario(
        self,
        title: str,
        load: str,
        servers: Sequence[_Server],
        make: Callable[[_Server], LoadTestConfig],
        max_rate: Callable[[_Server, list[Figures]], float | None] = lambda _server, _runs: None,
    ) -> Scenario:
        self.log(f"{title} ({load})")
        result = Scenario(title=title, load=load)
        load_at_start = os.getloadavg()[0]
        for repetition in range(self.config.runs):
            self.log(f" run {repetition + 1}/{self.config.runs}")
            for server in servers:
                if server.name in result.failures:
                    continue
                runs = result.runs.get(server.name, [])
                try:
                    runs.append(self.measure(server, make(server), max_rate(server, runs)))
                except LoadTestError as exc:
                    reason = str(exc)
                    code = server.outpost.exited() if server.outpost is not None else None
                    if code is not None and server.outpost is not None:
                        reason = f"the server process ended with code {code}: {server.outpost.log_tail(600)}"
                    result.failures[server.name] = reason
                    self.log(f"  {server.name}: failed: {reason}")
                    continue
                result.runs[server.name] = runs
        result.load_average = (load_at_start, os.getloadavg()[0])
        return result


def run_suite(config: SuiteConfig, requests: list[pb.ScoreRequest], log: Callable[[str], None]) -> SuiteResult:
    """Run every measurement; Outpost failures are recorded (the bare figures are still worth having)."""
    result = SuiteResult(config=config)
    suite = _Suite(config, requests, log)
    with contextlib.ExitStack() as stack:
        bare = stack.enter_context(BaselineServer())
        servers = [_Server(BARE, bare.target, bare.pid, RequestPool(requests))]
        outposts: dict[str, OutpostServer] = {}
        for name, settings in OUTPOST_VARIANTS:
            try:
                server = stack.enter_context(OutpostServer(settings, name=name))
            except LoadTestError as exc:
                result.outpost_error = f"{name} did not start: {exc}"
                log(result.outpost_error)
                break
            outposts[name] = server
            servers.append(_Server(name, server.target, server.pid, RequestPool(requests), outpost=server))
            log(f"{name} SERVING after {server.start_seconds:.2f} s (pid {server.pid})")
        suite.servers = servers
        for one in servers[1:]:
            suite.isolate(one)
            one.idle_share = result.idle_cpu_share[one.name] = _idle(one)
            log(f"{one.name} uses {one.idle_share:.0%} of a core while idle")
        busy = {name: share for name, share in result.idle_cpu_share.items() if share > IDLE_SHARE_LIMIT}
        if busy:
            result.notes.append(
                "Outpost used " + ", ".join(f"{share:.0%} ({name})" for name, share in busy.items()) + " of a core "
                "while SERVING with no calls at all: a background thread is polling instead of waiting. That CPU, "
                "and the GIL it holds, is taken from every call, so every Outpost figure below is worse than it "
                "should be; fix that first, then run `make bench` again."
            )
        if OUTPOST in outposts:
            result.memory["rss_at_start_mib"] = outposts[OUTPOST].rss_bytes() / 2**20
        _load_scenarios(suite, config, servers, result)
        for one in servers[1:]:
            if one.outpost is not None and one.outpost.paused:
                one.outpost.resume()
        for name in sorted(set(suite.unsettled)):
            result.notes.append(f"{name} was still busy 30 s after a run (an overload leaves a backlog behind); "
                                "the run after it was measured anyway")
        if OUTPOST in outposts:
            _memory(outposts[OUTPOST], result)
        for name, server in outposts.items():
            result.exit_codes[name] = server.stop()
        if OUTPOST in outposts:
            _restart_with_state(outposts[OUTPOST], result, log)
    if not result.outpost_error:
        _cold_starts(config, requests, result, log)
    return result


def _load_scenarios(suite: _Suite, config: SuiteConfig, servers: list[_Server], result: SuiteResult) -> None:
    main = [s for s in servers if s.name in (BARE, OUTPOST)]

    clients = config.client_processes

    def closed(concurrency: int, processes: int) -> Callable[[_Server], LoadTestConfig]:
        return lambda s: LoadTestConfig(target=s.target, concurrency=concurrency, processes=processes,
                                        duration_s=config.duration_s, warmup_s=config.warmup_s,
                                        cycle_payloads=s.name == BARE)

    def score_payload_rate(server: _Server, earlier: list[Figures]) -> float | None:
        # Pre-built payloads: twice what this server did in the previous repetition (the default before).
        return 2 * max(r.achieved_rate for r in earlier) + 100 if earlier else None

    result.saturation = suite.scenario(
        "Score throughput at saturation", f"closed loop, {config.saturation_concurrency} calls in flight from "
        f"{clients} client processes", servers, closed(config.saturation_concurrency, clients),
        score_payload_rate)
    result.one_in_flight = suite.scenario(
        "Score latency at one call in flight", "closed loop, 1 call in flight", servers, closed(1, 1),
        score_payload_rate)
    result.few_in_flight = suite.scenario(
        f"Score at {config.few_concurrency} calls in flight", f"closed loop, {config.few_concurrency} calls in flight "
        "from 1 client process", main, closed(config.few_concurrency, 1), score_payload_rate)
    own_rate = median_of(result.saturation.runs.get(OUTPOST, []), "achieved_rate")
    if own_rate == own_rate:
        own = max(1.0, round(own_rate / 2))
        result.open_loop_own_rate = own
        result.open_loop_own = suite.scenario(
            "Score latency in open loop at half Outpost's saturation rate",
            f"open loop, {own:.0f} calls/s offered from {clients} client processes", main,
            lambda s: LoadTestConfig(target=s.target, rate=own, processes=clients, duration_s=config.duration_s,
                                     warmup_s=config.warmup_s))

    bare_rate = median_of(result.saturation.runs.get(BARE, []), "achieved_rate")
    if bare_rate == bare_rate:  # not NaN
        rate = max(1.0, round(bare_rate / 2))
        result.open_loop_rate = rate
        result.open_loop = suite.scenario(
            "Score latency in open loop at half the bare saturation rate",
            f"open loop, {rate:.0f} calls/s offered from {clients} client processes", main,
            lambda s: LoadTestConfig(target=s.target, rate=rate, processes=clients, duration_s=config.duration_s,
                                     warmup_s=config.warmup_s))
    def batch_payload_rate(server: _Server, earlier: list[Figures]) -> float:
        # ScoreBatch payloads are pre-built: twice what this server did before, else twice the target.
        # (The bare server keeps no state and cycles through a few payloads.)
        if earlier:
            return 2 * max(r.achieved_rate for r in earlier) + 1
        return 100_000 / config.batch_size

    result.batch = suite.scenario(
        "ScoreBatch throughput", f"closed loop, {config.batch_concurrency} calls of {config.batch_size} "
        "transactions in flight", main,
        lambda s: LoadTestConfig(target=s.target, concurrency=config.batch_concurrency, method="ScoreBatch",
                                 batch_size=config.batch_size, warmup_s=1.0, duration_s=config.batch_duration_s,
                                 cycle_payloads=s.name == BARE),
        max_rate=batch_payload_rate,
    )


def _memory(server: OutpostServer, result: SuiteResult) -> None:
    result.memory["rss_after_mib"] = server.rss_bytes() / 2**20
    try:
        status = _status(server.target)
    except grpc.RpcError as exc:
        result.notes.append(f"RiskAdmin/GetStatus failed ({exc.code().name}); memory per account not measured")
        return
    result.memory["accounts"] = float(status.accounts)
    result.memory["transactions_applied"] = float(status.transactions_applied)
    if status.accounts:
        grown = result.memory["rss_after_mib"] - result.memory["rss_at_start_mib"]
        result.memory["bytes_per_account"] = grown * 2**20 / status.accounts


def _restart_with_state(server: OutpostServer, result: SuiteResult, log: Callable[[str], None]) -> None:
    """Start again on the state the load runs left behind: recovery from snapshot and log."""
    applied = int(result.memory.get("transactions_applied", 0))
    try:
        with OutpostServer(server.settings, data_dir=server.data_dir, name="outpost (restart)") as again:
            result.restart_with_state_s = again.start_seconds
            result.restart_transactions = applied
            log(f"restart on {applied} applied transactions: SERVING after {again.start_seconds:.2f} s")
    except LoadTestError as exc:
        result.notes.append(f"restart on existing state failed: {exc}")


FIRST_SECOND_RATE = 500.0  # calls/s offered to a server from the moment it is SERVING


def _cold_starts(config: SuiteConfig, requests: list[pb.ScoreRequest], result: SuiteResult,
                 log: Callable[[str], None]) -> None:
    """Launch-to-SERVING of fresh servers (the numba caches are warm from the servers started before), and the
    latency of each one's first second of calls: SERVING should mean answering as fast as later."""
    for i in range(config.cold_starts):
        try:
            with OutpostServer(name=f"cold start {i + 1}") as fresh:
                result.cold_start_s.append(fresh.start_seconds)
                first = run_load_test(
                    LoadTestConfig(target=fresh.target, rate=FIRST_SECOND_RATE, processes=1, duration_s=1.0,
                                   warmup_s=0.0),
                    RequestPool(requests), label=f"cold start {i + 1}",
                )
                p50, p99, top = (first.latency(name) for name in ("p50", "p99", "max"))
                result.first_second_ms.append((p50, p99, top))
                log(f"cold start {i + 1}: SERVING after {fresh.start_seconds:.2f} s; first second of calls p50 "
                    f"{p50:.2f} p99 {p99:.2f} max {top:.2f} ms")
            result.exit_codes[f"cold start {i + 1}"] = fresh.exit_code
        except LoadTestError as exc:
            result.notes.append(f"cold start failed: {exc}")
            return
    with tempfile.TemporaryDirectory(prefix="outpost-cache-") as cache:
        try:
            with OutpostServer({"CACHE_DIR": cache}, name="empty rules cache") as fresh:
                result.cold_start_empty_cache_s = fresh.start_seconds
                log(f"start with an empty rules-kernel cache: SERVING after {fresh.start_seconds:.2f} s")
        except LoadTestError as exc:
            result.notes.append(f"start with an empty cache failed: {exc}")
