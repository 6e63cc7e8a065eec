"""Several single-threaded grpc.aio worker processes sharing one port (SO_REUSEPORT).

The embedded feature state lives inside one process, so more than one worker requires the Redis backend; the
settings refuse anything else. The supervisor starts the workers as fresh interpreters (no fork after gRPC is
initialised), forwards SIGTERM / SIGINT / SIGHUP to them, and exits with the first non-zero exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

import structlog

from server._settings import Settings

__all__ = ["WORKER_INDEX_ENV", "supervise"]

log = structlog.get_logger("outpost.workers")
WORKER_INDEX_ENV = "OUTPOST_WORKER_INDEX"


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` worker processes until a signal stops them; returns the exit code."""
    log.info(
        "starting_workers",
        workers=settings.workers,
        state_backend=settings.state_backend,
        note="several workers share state through Redis; the embedded state is per process",
    )
    children: list[subprocess.Popen[bytes]] = []
    for index in range(settings.workers):
        env = dict(os.environ, OUTPOST_WORKERS=str(settings.workers), **{WORKER_INDEX_ENV: str(index)})
        if settings.metrics_addr:
            host, _, port = settings.metrics_addr.rpartition(":")
            env["OUTPOST_METRICS_ADDR"] = f"{host}:{int(port) + index}"
        children.append(subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=env))

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = 0
    while any(child.poll() is None for child in children):
        for child in children:
            rc = child.poll()
            if rc not in (None, 0) and code == 0:
                code = rc
                forward(signal.SIGTERM, None)
        time.sleep(0.2)
    return code
