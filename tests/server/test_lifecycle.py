"""The service as a process: graceful SIGTERM, and a kill -9 under load that loses no acknowledged transaction."""

from __future__ import annotations

import contextlib
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
from typing import Any

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

    def __init__(self, data_dir: Path, port: int, *, stderr_path: Path | None = None, **env: str) -> None:
        self.port = port
        full_env = dict(os.environ, OUTPOST_ADDR=f"127.0.0.1:{port}", OUTPOST_DATA_DIR=str(data_dir),
                        OUTPOST_LOG_LEVEL="warning", **env)
        # A file, not a pipe, when the server writes more than a pipe holds before anyone reads it (the child keeps
        # its own copy of the file once started).
        sink: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext(subprocess.PIPE) if stderr_path is None else stderr_path.open("wb")
        )
        with sink as stderr:
            self.proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=full_env,
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def wait_serving(self, timeout: float = 180.0) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                said = "(see its stderr file)"
                if self.proc.stderr is not None:
                    said = self.proc.stderr.read().decode()[-2000:]
                raise AssertionError(f"server exited early: {said}")
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


# Charts, training, and Redis, which only a server with OUTPOST_STATE_BACKEND=redis needs. (pandas is needed: pyarrow
# imports it at the decision log's first array, so the log does that at start; see the test below.)
_UNNEEDED_LIBRARIES = ("matplotlib", "lightgbm", "sklearn", "redis")

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
    """A single-machine server imports no chart, training library or Redis client: about a second of every cold
    start."""
    env = dict(os.environ, OUTPOST_DATA_DIR=str(tmp_path), OUTPOST_LOG_LEVEL="warning")
    done = subprocess.run([sys.executable, "-c", _LOAD_AND_LIST], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    imported = set(done.stdout.split())
    assert {"server", "features", "rules_engine", "models", "review", "onnxruntime", "numba"} <= imported
    assert imported.isdisjoint(_UNNEEDED_LIBRARIES), sorted(imported & set(_UNNEEDED_LIBRARIES))


def test_a_serving_server_imports_no_module(tmp_path: Path, processes: list[ServerProcess]) -> None:
    """Everything the calls need is imported before SERVING: an import holds the GIL (pandas, which pyarrow imports
    at its first array, once took the decision log's writer 0.2 s while a fresh server's first calls waited)."""
    from loadtest._data import simulated_transactions
    from loadtest._requests import row_to_request

    requests = [row_to_request(row) for row in simulated_transactions(600).head(600).to_dict("records")]
    stderr = tmp_path / "stderr.txt"
    server = ServerProcess(tmp_path / "data", _free_port(), stderr_path=stderr, PYTHONPROFILEIMPORTTIME="1")
    processes.append(server)
    server.wait_serving()
    served_from = stderr.stat().st_size
    assert b"import time:" in stderr.read_bytes()  # the child does report its imports

    replies = [server.scoring.Score(r, timeout=30) for r in requests[:300]]
    explained = pb.ScoreRequest()
    explained.CopyFrom(requests[300])
    explained.explain = True
    replies.append(server.scoring.Score(explained, timeout=30))
    replies.extend(server.scoring.ScoreBatch(pb.ScoreBatchRequest(requests=requests[301:]), timeout=60).responses)
    alerted = [r for r in replies if r.action >= pb.ACTION_REVIEW]
    assert alerted, "no call alerted: the alert queue's writer was not exercised"
    fraud = next(r for r in requests if r.transaction.transaction_id == alerted[0].transaction_id)
    server.scoring.ReportOutcome(pb.ReportOutcomeRequest(
        transaction_id=fraud.transaction.transaction_id, outcome=pb.OUTCOME_CONFIRMED_FRAUD,
        reported_at=fraud.transaction.event_time), timeout=30)
    segments = tmp_path / "data" / "decisions"

    def logged() -> bool:
        return any(p.stat().st_size for p in segments.glob(".active-*.arrows"))

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not logged():
        time.sleep(0.1)  # the writers linger 0.2 s between writes
    assert logged(), "the decision log wrote nothing"
    time.sleep(0.5)
    with stderr.open("rb") as fh:
        fh.seek(served_from)
        late = [line for line in fh.read().decode(errors="replace").splitlines() if line.startswith("import time:")]
    assert not late, "imported while serving:\n" + "\n".join(late[:20])
