"""Scripted rolling-restart check: two ``outpost serve`` on one Redis, restarted one after the other under load.

A client that retries on UNAVAILABLE and RESOURCE_EXHAUSTED (the codes a draining or busy server answers before
doing anything) keeps sending transactions; each client thread owns its accounts and counterparties, so the order
the servers applied them in is the order it sent them in. After both restarts the state in Redis is probed with
dry runs and compared with a local replay of exactly the acknowledged transactions: any difference is a lost (or
doubled) transaction. Prints the figures; exits 0 when nothing was lost, both drains exited 0 and every call was
answered within its retries, 1 otherwise. Run from the repository root::

    .venv/bin/python ops/checks/rolling_restart.py [--threads 4] [--accounts-per-thread 6]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from _process import OutpostProcess, free_port
from google.protobuf.timestamp_pb2 import Timestamp
from outpost.v1 import outpost_pb2 as pb
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from features import FEATURE_NAMES, FeatureConfig, FeatureEngine
from server._requests import encode_requests

__all__ = ["main"]

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
BASE_TIME = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)


def _ts(when: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


class Redis:
    """A redis-server on a free loopback port, append-only with fsync always, in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@dataclass
class Worker:
    """One client thread: its accounts, what was acknowledged, and what went wrong."""

    index: int
    accounts: list[str]
    acked: list[tuple[pb.ScoreRequest, pb.ScoreResponse]] = field(default_factory=list)
    ambiguous: dict[str, pb.ScoreRequest] = field(default_factory=dict)  # account -> a call of unknown outcome
    retries: int = 0
    worst_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def _client(worker: Worker, targets: list[str], stop: threading.Event, deadline_s: float) -> None:
    channels = [grpc.insecure_channel(t) for t in targets]
    stubs = [pb_grpc.RiskScoringStub(c) for c in channels]
    shunned = [0.0] * len(stubs)  # a server that answered UNAVAILABLE is left alone for a moment (it drains)
    k = 0
    try:
        while not stop.is_set():
            live = [a for a in worker.accounts if a not in worker.ambiguous]
            if not live:
                return
            account = live[k % len(live)]
            kind = (pb.TRANSACTION_TYPE_TRANSFER_IN, pb.TRANSACTION_TYPE_TRANSFER_OUT)[k % 2]
            request = pb.ScoreRequest(transaction=pb.Transaction(
                transaction_id=f"rr-{worker.index}-{k}", event_time=_ts(BASE_TIME + dt.timedelta(seconds=20 * k)),
                account_id=account, counterparty_id=f"cp-{worker.index}-{k % 7}", amount_minor=5_000 + 911 * k,
                currency="CNY", type=kind, channel=pb.CHANNEL_MOBILE, device_id=f"dev-{worker.index}"))
            started = time.monotonic()
            attempt = 0
            while True:
                now = time.monotonic()
                order = [(k + attempt + i) % len(stubs) for i in range(len(stubs))]  # spread calls round robin
                choice = next((i for i in order if shunned[i] <= now), order[0])
                try:
                    reply = stubs[choice].Score(request, timeout=deadline_s)
                except grpc.RpcError as err:
                    code = err.code()
                    if code == grpc.StatusCode.UNAVAILABLE:
                        shunned[choice] = time.monotonic() + 0.5
                    if code in RETRYABLE and attempt < 200 and not stop.is_set():
                        attempt += 1
                        worker.retries += 1
                        time.sleep(min(0.005 * attempt, 0.1))
                        continue
                    worker.errors[code.name] = worker.errors.get(code.name, 0) + 1
                    if code not in RETRYABLE:  # the call may or may not have been applied
                        worker.ambiguous[account] = request
                    break
                worker.acked.append((request, reply))
                break
            worker.worst_ms = max(worker.worst_ms, (time.monotonic() - started) * 1000)
            k += 1
    finally:
        for channel in channels:
            channel.close()


def _probe(account: str) -> pb.ScoreRequest:
    return pb.ScoreRequest(transaction=pb.Transaction(
        transaction_id=f"probe-{account}", event_time=_ts(BASE_TIME + dt.timedelta(days=40)), account_id=account,
        counterparty_id="probe", amount_minor=10_000, currency="CNY", type=pb.TRANSACTION_TYPE_TRANSFER_OUT,
        channel=pb.CHANNEL_MOBILE), dry_run=True, explain=True)


def _replay(history: list[tuple[pb.ScoreRequest, bool]], account: str, config: FeatureConfig) -> np.ndarray:
    engine = FeatureEngine.open(config)
    for request, blocked in history:
        record = encode_requests([request], config)
        _, handles = engine.score(record)
        engine.commit(record, handles, np.array([blocked]))
    expected, _ = engine.score(encode_requests([_probe(account)], config))
    return np.asarray(expected[0])


def _mismatches(workers: list[Worker], target: str) -> list[str]:
    """Accounts whose Redis state is not the replay of their acknowledged transactions (plus at most one unsure)."""
    config = FeatureConfig()
    bad: list[str] = []
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RiskScoringStub(channel)
        for worker in workers:
            history = [(req, reply.action == pb.ACTION_BLOCK) for req, reply in worker.acked]
            for account in worker.accounts:
                served = stub.Score(_probe(account), timeout=30).features
                got = np.array([served[name] for name in FEATURE_NAMES])
                # Accounts of one worker share its counterparties and device: replay the worker's whole history.
                candidates = [history]
                if account in worker.ambiguous:
                    candidates.append([*history, (worker.ambiguous[account], False)])
                if not any(np.allclose(got, _replay(c, account, config), rtol=1e-9, atol=1e-6) for c in candidates):
                    bad.append(account)
    return bad


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="outpost-rolling-") as tmp:
        root = Path(tmp)
        (root / "redis").mkdir()
        redis = Redis(root / "redis")
        env = {"OUTPOST_STATE_BACKEND": "redis", "OUTPOST_REDIS_URL": redis.url,
               "OUTPOST_GRACE_SECONDS": str(args.grace)}
        servers = [OutpostProcess(root / f"outpost-{i}", env) for i in range(2)]
        workers = [Worker(i, [f"acct-rr-{i}-{j}" for j in range(args.accounts_per_thread)])
                   for i in range(args.threads)]
        stop = threading.Event()
        threads: list[threading.Thread] = []
        exit_codes: list[int] = []
        try:
            for server in servers:
                server.start()
            targets = [s.target for s in servers]
            threads = [threading.Thread(target=_client, args=(w, targets, stop, args.deadline)) for w in workers]
            for t in threads:
                t.start()
            time.sleep(args.settle)
            for i, server in enumerate(servers):
                acked_before = sum(len(w.acked) for w in workers)
                began = time.monotonic()
                exit_codes.append(server.terminate(timeout_s=args.grace + 60))
                drained = time.monotonic() - began
                ready = server.start()
                acked_during = sum(len(w.acked) for w in workers) - acked_before
                print(f"restart {i + 1}/2 of {server.target}: drained and exited {exit_codes[-1]} in {drained:.2f} s, "
                      f"SERVING again after {ready:.2f} s; {acked_during} transactions acknowledged meanwhile "
                      "(by the other server)", flush=True)
                time.sleep(args.settle)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        try:
            bad = _mismatches(workers, servers[0].target)
        finally:
            for server in servers:
                try:
                    server.terminate()
                except subprocess.TimeoutExpired:
                    server.kill()
            redis.stop()
    acked = sum(len(w.acked) for w in workers)
    retries = sum(w.retries for w in workers)
    errors: dict[str, int] = {}
    for w in workers:
        for name, count in w.errors.items():
            errors[name] = errors.get(name, 0) + count
    unsure = sum(len(w.ambiguous) for w in workers)
    accounts = sum(len(w.accounts) for w in workers)
    print(f"acknowledged transactions: {acked}; retried attempts (UNAVAILABLE/RESOURCE_EXHAUSTED): {retries}; "
          f"calls that failed for good: {errors or 0}; calls of unknown outcome: {unsure}")
    print(f"slowest call including its retries: {max(w.worst_ms for w in workers):.1f} ms")
    print(f"accounts whose Redis state differs from the replay of acknowledged transactions: {len(bad)} of {accounts}"
          + (f" ({', '.join(bad[:5])})" if bad else ""))
    ok = not bad and all(code == 0 for code in exit_codes) and not errors and acked > 0
    print("result: " + ("PASS - no acknowledged transaction lost across the rolling restart" if ok else "FAIL"))
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rolling_restart.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--accounts-per-thread", type=int, default=6)
    p.add_argument("--settle", type=float, default=3.0, help="seconds of load before, between and after restarts")
    p.add_argument("--grace", type=float, default=10.0, help="OUTPOST_GRACE_SECONDS of the servers")
    p.add_argument("--deadline", type=float, default=10.0, help="deadline of each call attempt, seconds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
