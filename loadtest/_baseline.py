"""The bare limit: a do-nothing grpc.aio server with Outpost's proto, answering one fixed ScoreResponse.

It parses every request and serializes the fixed response, exactly what any Python gRPC servicer
must do, and nothing more, so a run against it measures the cost of the stack itself. It runs in
its own process (``python -m loadtest._baseline``), prints ``PORT <n>`` once bound to a free loopback
port, answers health checks, and stops cleanly on SIGTERM. ``--stall-after N --stall-ms M`` blocks its
event loop once, at the N-th Score call, to show what an open-loop measurement makes of a stall.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from outpost.v1 import outpost_pb2 as pb
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from loadtest._errors import TargetError
from loadtest._health import wait_serving

__all__ = ["FIXED_RESPONSE", "BaselineServer"]

_ROOT = Path(__file__).resolve().parent.parent

# A response of the size Outpost sends for an everyday transaction: a score, an action, one reason.
FIXED_RESPONSE = pb.ScoreResponse(
    transaction_id="baseline",
    risk_score=42,
    action=pb.ACTION_ALLOW,
    reasons=[
        pb.Reason(code="M_amount_vs_typical", message="金额高于该账户的常见水平", source=pb.MODEL, contribution=12.5)
    ],
    model_probability=0.012,
    ruleset_version="baseline",
    model_version="baseline",
    latency_us=1,
)


class _BareScoring(pb_grpc.RiskScoringServicer):  # type: ignore[misc]  # generated code is not type-checked
    """Answers every Score with FIXED_RESPONSE and every ScoreBatch with one FIXED_RESPONSE per request."""

    def __init__(self, *, stall_after: int, stall_s: float) -> None:
        self._calls = 0
        self._stall_after = stall_after
        self._stall_s = stall_s
        self._batches: dict[int, pb.ScoreBatchResponse] = {}

    async def Score(self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        self._calls += 1
        if self._calls == self._stall_after:
            # Blocks the whole event loop, like a stop-the-world pause would: every call in flight waits.
            time.sleep(self._stall_s)
        return FIXED_RESPONSE

    async def ScoreBatch(
        self, request: pb.ScoreBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreBatchResponse:
        size = len(request.requests)
        reply = self._batches.get(size)
        if reply is None:
            reply = self._batches[size] = pb.ScoreBatchResponse(responses=[FIXED_RESPONSE] * size)
        return reply


async def _serve(port: int, *, stall_after: int, stall_s: float) -> None:
    server = grpc.aio.server()
    pb_grpc.add_RiskScoringServicer_to_server(_BareScoring(stall_after=stall_after, stall_s=stall_s), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await health.enter_graceful_shutdown()
    await server.stop(grace=1.0)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest._baseline", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: a free one, printed as PORT n)")
    parser.add_argument("--stall-after", type=int, default=0, help="block the event loop once at this Score call")
    parser.add_argument("--stall-ms", type=float, default=0.0, help="how long the one stall lasts")
    ns = parser.parse_args(argv)
    asyncio.run(_serve(ns.port, stall_after=ns.stall_after, stall_s=ns.stall_ms / 1000.0))
    return 0


class BaselineServer:
    """The bare server in a subprocess on a free loopback port; a context manager that starts and stops it."""

    def __init__(self, *, stall_after: int = 0, stall_ms: float = 0.0, start_timeout_s: float = 30.0) -> None:
        self._args = [sys.executable, "-m", "loadtest._baseline", "--port", "0"]
        if stall_after:
            self._args += ["--stall-after", str(stall_after), "--stall-ms", str(stall_ms)]
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        self.port = 0

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT`` of the running server."""
        if not self.port:
            raise TargetError("the baseline server is not started; call start() or use it as a context manager")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the running server."""
        if self._process is None:
            raise TargetError("the baseline server is not started")
        return self._process.pid

    def start(self) -> BaselineServer:
        """Start the server and wait until it is SERVING."""
        env = dict(os.environ)
        # The child imports this package; make it importable whatever the install state of the venv.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        self._process = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        assert self._process.stdout is not None
        deadline = time.monotonic() + self._start_timeout_s
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(timeout=remaining):
                    self.stop()
                    raise TargetError(f"the baseline server printed no port within {self._start_timeout_s:.0f} s")
                chunk = os.read(self._process.stdout.fileno(), 256)
                if not chunk:
                    tail = self._stderr_tail()
                    self.stop()
                    raise TargetError(f"the baseline server exited before binding a port: {tail}")
                line += chunk
        self.port = int(line.split()[1])
        wait_serving(self.target, timeout_s=max(1.0, deadline - time.monotonic()), process=self._process)
        return self

    def stop(self) -> int | None:
        """SIGTERM the server and wait for it; its exit code (None if it was never started)."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()
        return process.returncode

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode("utf-8", "replace")

    def __enter__(self) -> BaselineServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


if __name__ == "__main__":
    sys.exit(_main())
