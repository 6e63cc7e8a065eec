"""The service as a process: graceful SIGTERM, and a kill -9 under load that loses no acknowledged transaction."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from outpost.v1 import outpost_pb2 as pb
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from features import FEATURE_NAMES, FeatureConfig, FeatureEngine
from server._requests import encode_requests
from tests.server.conftest import BASE_TIME, txn

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`outpost serve` as a child process on a loopback port."""

    def __init__(self, data_dir: Path, port: int, **env: str) -> None:
        self.port = port
        full_env = dict(os.environ, OUTPOST_ADDR=f"127.0.0.1:{port}", OUTPOST_DATA_DIR=str(data_dir),
                        OUTPOST_LOG_LEVEL="warning", **env)
        self.proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=full_env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def wait_serving(self, timeout: float = 180.0) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not become SERVING in time")

    @property
    def scoring(self) -> pb_grpc.RiskScoringStub:
        return pb_grpc.RiskScoringStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for p in started:
        p.close()


def test_sigterm_drains_and_exits_zero(tmp_path: Path, processes: list[ServerProcess]) -> None:
    """SIGTERM: health goes NOT_SERVING, calls in flight finish, the process exits 0."""
    server = ServerProcess(tmp_path, _free_port())
    processes.append(server)
    server.wait_serving()
    assert server.scoring.Score(txn("acct-sigterm")).action == pb.ACTION_ALLOW
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0


def _probe(account: str) -> pb.ScoreRequest:
    return txn(account, at=BASE_TIME + dt.timedelta(days=1), dry_run=True, explain=True)


def test_kill_9_under_load_keeps_every_acknowledged_transaction(tmp_path: Path,
                                                               processes: list[ServerProcess]) -> None:
    """After SIGKILL under load, a restart rebuilds exactly the state of the acknowledged transactions."""
    port = _free_port()
    server = ServerProcess(tmp_path, port, OUTPOST_DURABILITY="fsync")
    processes.append(server)
    server.wait_serving()
    accounts = [f"acct-crash-{i}" for i in range(12)]
    acked: list[tuple[pb.ScoreRequest, pb.ScoreResponse]] = []
    in_flight: list[pb.ScoreRequest] = []
    stop = threading.Event()

    def client(worker: int) -> None:
        k = 0
        stub = server.scoring
        while not stop.is_set():
            account = accounts[worker * 4 + k % 4]  # each worker owns its accounts: arrival order = send order
            kind = (pb.TRANSACTION_TYPE_TRANSFER_IN, pb.TRANSACTION_TYPE_TRANSFER_OUT)[k % 2]
            req = txn(account, amount_minor=10_000 + 137 * k, type=kind, channel=pb.CHANNEL_MOBILE,
                      counterparty=f"cp-{k % 9}", at=BASE_TIME + dt.timedelta(seconds=k * 30))
            in_flight.append(req)
            try:
                reply = stub.Score(req, timeout=10)
            except grpc.RpcError:
                return
            acked.append((req, reply))
            k += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    while len(acked) < 300:
        time.sleep(0.01)
    server.proc.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    server.proc.wait(timeout=30)
    server.close()

    restarted = ServerProcess(tmp_path, port, OUTPOST_DURABILITY="fsync")
    processes.append(restarted)
    restarted.wait_serving()

    acked_ids = {req.transaction.transaction_id for req, _ in acked}
    unacked = [r for r in in_flight if r.transaction.transaction_id not in acked_ids]
    config = FeatureConfig()
    count_col = FEATURE_NAMES.index("txn_count_total")
    for account in accounts:
        served = np.array([restarted.scoring.Score(_probe(account)).features[n] for n in FEATURE_NAMES])
        mine = [(req, reply) for req, reply in acked if req.transaction.account_id == account]
        maybe = [r for r in unacked if r.transaction.account_id == account]
        candidates = [mine]
        # A call whose reply was in flight at the kill may or may not have become durable.
        for extra in maybe:
            candidates.append([*mine, (extra, pb.ScoreResponse(action=pb.ACTION_ALLOW))])
        matched = False
        for history in candidates:
            engine = FeatureEngine.open(config)
            for req, reply in sorted(history, key=lambda p: p[0].transaction.event_time.ToNanoseconds()):
                record = encode_requests([req], config)
                _, handles = engine.score(record)
                engine.commit(record, handles, np.array([reply.action == pb.ACTION_BLOCK]))
            expected, _ = engine.score(encode_requests([_probe(account)], config))
            if np.allclose(served, expected[0], rtol=1e-9, atol=1e-6):
                matched = True
                break
        assert matched, f"{account}: restored state differs from the replay of acknowledged transactions " \
                        f"(served txn_count_total={served[count_col]}, acked={len(mine)})"


# Offline analysis and training, and Redis, which only a server with OUTPOST_STATE_BACKEND=redis needs.
_UNNEEDED_LIBRARIES = ("pandas", "matplotlib", "lightgbm", "sklearn", "redis")

_LOAD_AND_LIST = """
import sys
from server._service import OutpostService
from server._settings import load_settings

service = OutpostService.create(load_settings())
service.load()
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
service.close()
"""


def test_a_loaded_service_has_not_imported_what_it_does_not_serve_with(tmp_path: Path) -> None:
    """A single-machine server imports no pandas, matplotlib, training library or Redis client: about a second of
    every cold start."""
    env = dict(os.environ, OUTPOST_DATA_DIR=str(tmp_path), OUTPOST_LOG_LEVEL="warning")
    done = subprocess.run([sys.executable, "-c", _LOAD_AND_LIST], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    imported = set(done.stdout.split())
    assert {"server", "features", "rules_engine", "models", "review", "onnxruntime", "numba"} <= imported
    assert imported.isdisjoint(_UNNEEDED_LIBRARIES), sorted(imported & set(_UNNEEDED_LIBRARIES))
