"""Health reflects reality: NOT_SERVING while rules load or the state backend is missing; a clear exit on failure."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from server import OutpostApp, Settings
from server._settings import PACKAGE_ROOT
from tests.hardening.conftest import RedisServer, free_port, health_status, rpc_code, wait_health
from tests.server.conftest import make_settings, txn

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def booting() -> Iterator[Callable[[Settings], tuple[OutpostApp, grpc.Channel]]]:
    """Start an OutpostApp without waiting for it to load; stopped (and its loop closed) after the test."""
    started: list[tuple[OutpostApp, asyncio.AbstractEventLoop, threading.Thread, grpc.Channel]] = []

    def boot(settings: Settings) -> tuple[OutpostApp, grpc.Channel]:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        async def create() -> OutpostApp:
            app = OutpostApp(settings)
            await app.start()
            return app

        app = asyncio.run_coroutine_threadsafe(create(), loop).result(timeout=60)
        channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
        started.append((app, loop, thread, channel))
        return app, channel

    yield boot
    for app, loop, thread, channel in started:
        channel.close()
        asyncio.run_coroutine_threadsafe(app.stop(grace=1), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


Boot = Callable[[Settings], tuple[OutpostApp, grpc.Channel]]


def test_not_serving_while_the_rules_are_loading(tmp_path: Path, booting: Boot) -> None:
    """Until the rule file has been read and compiled, health is NOT_SERVING and Score is UNAVAILABLE."""
    fifo = tmp_path / "rules.yaml"
    os.mkfifo(fifo)  # reading it blocks until the test writes the rules: loading takes exactly as long as we say
    _, channel = booting(make_settings(tmp_path, rules_path=fifo))
    try:
        for service in ("", "outpost.v1.RiskScoring", "outpost.v1.RiskAdmin"):
            assert health_status(channel, service) == NOT_SERVING
        stub = pb_grpc.RiskScoringStub(channel)
        assert rpc_code(lambda: stub.Score(txn("acct-health-1"), timeout=10)) == grpc.StatusCode.UNAVAILABLE
    finally:
        with fifo.open("w", encoding="utf-8") as pipe:
            pipe.write((PACKAGE_ROOT / "rules_engine" / "packs" / "default.yaml").read_text(encoding="utf-8"))
    wait_health(channel, SERVING, timeout=120)
    assert rpc_code(lambda: pb_grpc.RiskScoringStub(channel).Score(txn("acct-health-1"), timeout=10)) == \
        grpc.StatusCode.OK


@pytest.mark.redis
def test_not_serving_until_the_state_backend_answers(tmp_path: Path, booting: Boot) -> None:
    """A server whose Redis is not up yet stays NOT_SERVING, and serves once Redis starts (no restart needed)."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    redis = RedisServer(workdir)
    try:
        _, channel = booting(make_settings(tmp_path, state_backend="redis", redis_url=redis.url))
        assert health_status(channel) == NOT_SERVING
        wait_health(channel, NOT_SERVING, timeout=5)  # still nothing after several retries
        redis.start()
        wait_health(channel, SERVING, timeout=60)
        assert rpc_code(lambda: pb_grpc.RiskScoringStub(channel).Score(txn("acct-health-2"), timeout=10)) == \
            grpc.StatusCode.OK
    finally:
        redis.stop()


def test_a_stalled_state_disk_turns_health_not_serving_and_refuses_new_calls_until_it_syncs(
    tmp_path: Path, booting: Boot
) -> None:
    """While a state-log sync hangs, health is NOT_SERVING and new calls get UNAVAILABLE (applying nothing); the call
    waiting on the sync is answered once it completes, and the server serves again."""
    app, channel = booting(make_settings(tmp_path, durability="fsync", sync_stall_seconds=0.2))
    wait_health(channel, SERVING, timeout=120)
    engine = app.service.engine
    assert engine is not None
    real_sync, disk = engine.sync, threading.Event()
    phase = ["slow"]

    def faulty_disk(fsync: bool = True) -> int:
        if phase[0] == "slow":
            time.sleep(0.05)  # slower than INLINE_SYNC_MAX_S: the next sync leaves the event loop
        elif phase[0] == "stalled":
            disk.wait(60)
        return real_sync(fsync=fsync)

    engine.sync = faulty_disk  # type: ignore[method-assign]
    stub = pb_grpc.RiskScoringStub(channel)
    applied = engine.stats()["applied"]
    assert rpc_code(lambda: stub.Score(txn("acct-disk-1"), timeout=30)) == grpc.StatusCode.OK
    phase[0] = "stalled"
    waiting = stub.Score.future(txn("acct-disk-2"), timeout=60)
    try:
        wait_health(channel, NOT_SERVING, timeout=30)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Score(txn("acct-disk-3"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "retry on another instance" in (refused.value.details() or "")
        assert not waiting.done()
    finally:
        phase[0] = "fast"
        disk.set()
    assert waiting.result(timeout=60).transaction_id
    wait_health(channel, SERVING, timeout=30)
    assert rpc_code(lambda: stub.Score(txn("acct-disk-4"), timeout=30)) == grpc.StatusCode.OK
    assert engine.stats()["applied"] == applied + 3  # calls 1, 2 and 4: the refused call changed nothing


def test_serve_exits_with_a_message_when_the_rules_cannot_load(tmp_path: Path) -> None:
    """`outpost serve` with a missing rule file exits 2 naming the file, instead of idling NOT_SERVING forever."""
    missing = tmp_path / "nowhere" / "rules.yaml"
    env = dict(os.environ, OUTPOST_ADDR=f"127.0.0.1:{free_port()}", OUTPOST_DATA_DIR=str(tmp_path),
               OUTPOST_RULES_PATH=str(missing))
    done = subprocess.run([sys.executable, "-m", "server.cli", "serve"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(missing) in done.stderr and "outpost serve:" in done.stderr
