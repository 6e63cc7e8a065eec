"""Running a load test: payloads are cut and dealt to client processes, which start together and report back."""

from __future__ import annotations

import math
import multiprocessing
import time
from multiprocessing.connection import Connection, wait

from loadtest._config import LoadTestConfig
from loadtest._errors import LoadTestError, TargetError
from loadtest._report import LoadReport, build_report
from loadtest._requests import RequestPool
from loadtest._worker import WorkerResult, WorkerSpec, worker_main

__all__ = ["closed_loop_calls", "run_load_test"]

# Closed loop: payloads are pre-built for at most this many calls/s per client process (a Python client
# process cannot send much faster); raise it with LoadTestConfig / --max-rate on a bigger machine.
_SCORE_CALLS_PER_PROCESS = 12_000.0
_BATCH_TRANSACTIONS_PER_PROCESS = 100_000.0
_START_MARGIN_S = 0.25  # between "everyone is ready" and the common start


def closed_loop_calls(config: LoadTestConfig, max_rate: float | None = None) -> int:
    """How many payloads to pre-build for a closed-loop run (``max_rate``: expected ceiling, calls/s)."""
    if max_rate is None:
        if config.method == "Score":
            max_rate = _SCORE_CALLS_PER_PROCESS * config.processes
        else:
            max_rate = _BATCH_TRANSACTIONS_PER_PROCESS * config.processes / config.batch_size
    return math.ceil(max_rate * (config.warmup_s + config.duration_s)) + (config.concurrency or 0)


def _open_loop_calls(config: LoadTestConfig) -> list[int]:
    """Calls per process: process p sends at p/rate + i*P/rate for every instant before the end."""
    assert config.rate is not None
    total = config.warmup_s + config.duration_s
    per = config.processes / config.rate
    return [max(0, math.ceil((total - p / config.rate) / per)) for p in range(config.processes)]


def run_load_test(
    config: LoadTestConfig,
    pool: RequestPool,
    *,
    max_rate: float | None = None,
    baseline: bool = False,
    label: str = "",
) -> LoadReport:
    """Run ``config`` against its target with payloads from ``pool``; the merged report.

    Client processes are spawned (not forked: gRPC must not be forked once it runs), each opens
    its own channel, and all start at one common instant after every one of them is connected.
    """
    processes = config.processes
    if config.open_loop:
        counts = _open_loop_calls(config)
        total_calls = sum(counts)
    else:
        total_calls = closed_loop_calls(config, max_rate)
        if config.cycle_payloads:  # a stateless target: a few distinct payloads per lane are enough
            total_calls = min(total_calls, max(64, 8 * (config.concurrency or 1)))
    payloads = pool.take(total_calls, method=config.method, batch_size=config.batch_size)
    # Dealt round robin, so every process moves through business time at the same pace.
    shares = [payloads[p::processes] for p in range(processes)]
    concurrency = config.concurrency or 0
    lanes = [concurrency // processes + (1 if p < concurrency % processes else 0) for p in range(processes)]

    context = multiprocessing.get_context("spawn")
    connections: list[Connection] = []
    children = []
    try:
        for p in range(processes):
            parent_end, child_end = context.Pipe()
            spec = WorkerSpec(
                index=p,
                target=config.target,
                method=config.method,
                rate=config.rate / processes if config.rate is not None else None,
                phase_s=p / config.rate if config.rate is not None else 0.0,
                concurrency=lanes[p],
                warmup_s=config.warmup_s,
                duration_s=config.duration_s,
                deadline_s=config.deadline_ms / 1000.0,
                max_in_flight=config.max_in_flight,
                connect_timeout_s=config.connect_timeout_s,
                cycle_payloads=config.cycle_payloads,
                payloads=shares[p],
            )
            child = context.Process(target=worker_main, args=(spec, child_end), name=f"loadtest-client-{p}")
            child.start()
            child_end.close()
            children.append(child)
            connections.append(parent_end)
        _await_ready(connections, config.connect_timeout_s + 60.0)  # + the time to spawn and import
        start_wall = time.time() + _START_MARGIN_S
        for conn in connections:
            conn.send(start_wall)
        budget = _START_MARGIN_S + config.warmup_s + config.duration_s + config.deadline_ms / 1000.0 + 120.0
        results = _await_results(connections, budget)
    finally:
        for conn in connections:  # a client still waiting for the start sees EOF and exits
            conn.close()
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join(timeout=5)
    return build_report(config, sorted(results, key=lambda r: r.index), baseline=baseline, label=label)


def _await_ready(connections: list[Connection], timeout_s: float) -> None:
    """Wait for every client to say it is connected; raise with the first client's error if one failed."""
    waiting = set(connections)
    failed: list[WorkerResult] = []
    deadline = time.monotonic() + timeout_s
    while waiting:
        ready = wait(list(waiting), timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TargetError(f"{len(waiting)} client process(es) could not connect within {timeout_s:.0f} s")
        for conn in ready:
            assert isinstance(conn, Connection)
            try:
                kind, value = conn.recv()
            except EOFError:
                raise LoadTestError("a client process died while starting; see its output above") from None
            if kind == "result":
                failed.append(value)
            waiting.discard(conn)
    if failed:
        raise TargetError(f"a client process could not connect to the target: {failed[0].error}")


def _await_results(connections: list[Connection], timeout_s: float) -> list[WorkerResult]:
    results: list[WorkerResult] = []
    waiting = set(connections)
    deadline = time.monotonic() + timeout_s
    while waiting:
        ready = wait(list(waiting), timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise LoadTestError(f"{len(waiting)} client process(es) did not finish within {timeout_s:.0f} s")
        for conn in ready:
            assert isinstance(conn, Connection)
            try:
                kind, value = conn.recv()
            except EOFError:
                raise LoadTestError("a client process died during the run; see its output above") from None
            if kind == "result":
                results.append(value)
                waiting.discard(conn)
    return results
