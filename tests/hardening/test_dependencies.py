"""Failing dependencies: Redis killed and restarted under a running server, and an unreadable model on reload."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from outpost.v1 import outpost_pb2 as pb
from structlog.testing import capture_logs

from models import default_model_dir
from tests.hardening.conftest import RedisServer, health_status, rpc_code, sample, scrape, wait_health
from tests.server.conftest import BASE_TIME, RunningServer, make_settings, start_server, txn

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def redis_outpost(redis_server: RedisServer, tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(make_settings(tmp_path, state_backend="redis", redis_url=redis_server.url,
                                        metrics_addr="127.0.0.1:0"))
    yield server
    server.stop()


def _state_up(server: RunningServer) -> float:
    return sample(scrape(server.app.metrics_port or 0), "outpost_dependency_up", dependency="state")


def _teller_withdrawal(account: str, minutes: int) -> pb.ScoreRequest:
    return txn(account, amount_minor=20_000, type=pb.TRANSACTION_TYPE_CASH_WITHDRAWAL, channel=pb.CHANNEL_TELLER,
               counterparty="", branch_id="SZ-01", at=BASE_TIME + dt.timedelta(minutes=minutes))


@pytest.mark.redis
def test_redis_outage_degrades_per_channel_and_recovers(redis_outpost: RunningServer,
                                                        redis_server: RedisServer) -> None:
    """Redis killed: fail-open and fail-closed answers, NOT_SERVING, metric 0, logs; restarted: all recovers."""
    scoring = redis_outpost.scoring
    first = scoring.Score(txn("acct-redis-1", at=BASE_TIME), timeout=10)
    assert not first.degraded
    assert health_status(redis_outpost.channel) == SERVING and _state_up(redis_outpost) == 1

    redis_server.kill()
    with capture_logs() as entries:
        open_reply = scoring.Score(txn("acct-redis-1", at=BASE_TIME + dt.timedelta(minutes=1)), timeout=10)
        closed_reply = scoring.Score(_teller_withdrawal("acct-redis-2", 2), timeout=10)
    assert open_reply.degraded and open_reply.degraded_reason == "state_unavailable"
    assert open_reply.action == pb.ACTION_ALLOW  # POS fails open: an ordinary payment goes through
    assert closed_reply.degraded and closed_reply.degraded_reason == "state_unavailable"
    assert closed_reply.action >= pb.ACTION_CHALLENGE  # TELLER fails closed
    wait_health(redis_outpost.channel, NOT_SERVING, timeout=10)
    assert health_status(redis_outpost.channel, "outpost.v1.RiskScoring") == NOT_SERVING
    assert _state_up(redis_outpost) == 0
    events = [e["event"] for e in entries]
    assert "state_backend_failed_scoring_degraded" in events and "dependency_error" in events
    assert redis_server.password not in json.dumps(entries, default=str)

    redis_server.start()  # same port, same append-only file
    wait_health(redis_outpost.channel, SERVING, timeout=30)  # recovers without any scoring traffic
    assert _state_up(redis_outpost) == 1
    after = scoring.Score(txn("acct-redis-1", at=BASE_TIME + dt.timedelta(minutes=3), explain=True), timeout=10)
    assert not after.degraded
    assert after.features["txn_count_total"] == 1, "degraded answers must not change the state"


@pytest.mark.redis
def test_redis_dying_without_traffic_turns_health_not_serving(redis_outpost: RunningServer,
                                                              redis_server: RedisServer) -> None:
    """Health follows the state backend even when no call arrives to notice it is gone."""
    assert health_status(redis_outpost.channel) == SERVING
    redis_server.kill()
    wait_health(redis_outpost.channel, NOT_SERVING, timeout=30)
    assert _state_up(redis_outpost) == 0
    redis_server.start()
    wait_health(redis_outpost.channel, SERVING, timeout=30)


def _registry(server: RunningServer) -> Path:
    registry = server.app.settings.model_registry
    assert registry is not None
    registry.mkdir(parents=True, exist_ok=True)
    return registry


def _broken_copy(registry: Path, *, keep_checksum: bool) -> str:
    name = "model-garbage" if keep_checksum else "model-tampered"
    copy = registry / name
    shutil.copytree(default_model_dir(), copy, dirs_exist_ok=True)
    (copy / "model.onnx").write_bytes(b"\x08\x07 this is not an ONNX model " * 50)
    if keep_checksum:  # the checksum matches the garbage, so ONNX Runtime itself must refuse it
        meta = json.loads((copy / "metadata.json").read_text(encoding="utf-8"))
        meta.get("files", {}).pop("model.onnx", None)
        (copy / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return name


def test_unreadable_model_on_reload_keeps_the_old_model(plain_server: RunningServer) -> None:
    """ReloadModel of a corrupt, tampered or missing model is an error reply; the old model keeps scoring."""
    admin, scoring = plain_server.admin, plain_server.scoring
    before = admin.GetStatus(pb.GetStatusRequest()).model_version
    registry = _registry(plain_server)
    for version in (_broken_copy(registry, keep_checksum=True), _broken_copy(registry, keep_checksum=False),
                    str(registry / "missing"), "no-such-version"):
        reply = admin.ReloadModel(pb.ReloadModelRequest(model_version=version), timeout=60)
        assert not reply.ok and reply.errors and reply.model_version == before, version
        scored = scoring.Score(txn("acct-model-keep"), timeout=10)
        assert scored.model_version == before and scored.model_probability > 0 and not scored.degraded
    assert health_status(plain_server.channel) == SERVING


def test_reload_model_refuses_paths_outside_the_registry(tmp_path: Path, plain_server: RunningServer) -> None:
    """A good model outside the registry, or reached with '..', is refused by name of the registry; nothing changes."""
    admin = plain_server.admin
    before = admin.GetStatus(pb.GetStatusRequest()).model_version
    outside = tmp_path / "gbm-outside"
    shutil.copytree(default_model_dir(), outside)
    registry = _registry(plain_server)
    for version in (str(outside), f"../{outside.name}", str(registry), "..", str(registry / ".." / "elsewhere")):
        reply = admin.ReloadModel(pb.ReloadModelRequest(model_version=version), timeout=60)
        assert not reply.ok and reply.model_version == before, version
        assert "model registry" in reply.errors[0] and "OUTPOST_MODEL_REGISTRY" in reply.errors[0], reply.errors
    assert admin.GetStatus(pb.GetStatusRequest()).model_version == before


@pytest.mark.redis
def test_hung_redis_does_not_stall_every_call(redis_outpost: RunningServer, redis_server: RedisServer) -> None:
    """Redis frozen (SIGSTOP): after the first call notices, calls answer degraded without waiting on it each time."""
    scoring = redis_outpost.scoring
    assert not scoring.Score(txn("acct-hung-1"), timeout=10).degraded
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # alive but silent: every request to it runs into its timeout
    try:
        assert scoring.Score(txn("acct-hung-1"), timeout=10).degraded  # this one waits for the Redis timeout
        codes = [rpc_code(lambda: scoring.Score(txn("acct-hung-1", dry_run=True), timeout=0.4)) for _ in range(12)]
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    # Each call that waits on the frozen Redis blocks the event loop for the client's socket timeout (0.5 s), longer
    # than these calls' deadline; a server that remembers the outage answers them degraded in milliseconds.
    assert codes.count(grpc.StatusCode.OK) >= len(codes) // 2, codes
    wait_health(redis_outpost.channel, SERVING, timeout=30)
    assert not scoring.Score(txn("acct-hung-1"), timeout=10).degraded
