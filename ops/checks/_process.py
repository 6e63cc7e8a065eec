"""`outpost serve` as a child process for the scripted checks: start on a free port, wait for SERVING, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from loadtest import wait_serving

__all__ = ["OutpostProcess", "cpu_seconds", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far; NaN where /proc is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OutpostProcess:
    """One ``outpost serve`` child with ``OUTPOST_*`` settings from ``env``; its output goes to ``log_path``."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, *, port: int | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.cpus = cpus  # pin the server to these CPUs (Linux), e.g. to keep load-test clients off its core
        self.data_dir = data_dir
        self.env = {"OUTPOST_ADDR": f"127.0.0.1:{self.port}", "OUTPOST_DATA_DIR": str(data_dir),
                    "OUTPOST_LOG_LEVEL": "warning", **(env or {})}
        self.log_path = data_dir / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout_s: float = 300.0) -> float:
        """Start and wait until SERVING; the seconds it took."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            cpus = self.cpus
            self.proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env={**os.environ, **self.env},
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        return wait_serving(self.target, timeout_s=timeout_s, process=self.proc)

    def terminate(self, *, timeout_s: float = 60.0) -> int:
        """SIGTERM (graceful drain) and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def cpu_seconds(self) -> float:
        """CPU seconds the server process has used so far."""
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> OutpostProcess:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()
