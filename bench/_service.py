"""A real Outpost server (``outpost serve``) in a subprocess for the benchmarks, and what it costs the machine.

Each server gets a free loopback port and its own data directory; start-up is timed from
process launch to health SERVING; CPU time and resident memory are read from /proc for the
server and every process it forks (workers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from loadtest import TargetError, wait_serving

__all__ = [
    "OutpostServer", "free_port", "process_tree_cpu_seconds", "process_tree_main_thread_cpu_seconds",
    "process_tree_rss_bytes",
]

_ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(path: str) -> list[str]:
    """The fields of a /proc stat file after the command name (which may hold spaces and parentheses)."""
    stat = Path(path).read_text()
    return stat[stat.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(_stat_fields(f"/proc/{entry}/stat")[1]) == pid:
                found.append(int(entry))
    return found


def _tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in _children(parent)]
        pids.extend(frontier)
    return pids


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its live descendants (and children it has reaped)."""
    total = 0.0
    for one in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # utime, stime, cutime, cstime are fields 14..17 of /proc/PID/stat (1-based, pid first).
            total += sum(int(v) for v in _stat_fields(f"/proc/{one}/stat")[11:15]) / _TICKS
    return total


def process_tree_main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by the main thread (the event loop's) of ``pid`` and of its live
    descendants: the rest of ``process_tree_cpu_seconds`` is their other threads'."""
    total = 0.0
    for one in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(f"/proc/{one}/task/{one}/stat")
            total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime of this thread alone
    return total


def process_tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its live descendants, in bytes."""
    total = 0
    for one in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{one}/statm").read_text().split()[1]) * _PAGE
    return total


class OutpostServer:
    """``outpost serve`` on a free loopback port with its own data directory; a context manager.

    ``settings`` are ``OUTPOST_*`` variables without the prefix (``{"DURABILITY": "write"}``).
    ``data_dir`` reuses a directory (a restart with state); by default a fresh one is made and removed.
    """

    def __init__(
        self,
        settings: Mapping[str, str] | None = None,
        *,
        data_dir: Path | None = None,
        start_timeout_s: float = 120.0,
        name: str = "outpost",
    ) -> None:
        self.name = name
        self.settings = dict(settings or {})
        self._own_dir = tempfile.TemporaryDirectory(prefix="outpost-bench-") if data_dir is None else None
        self.data_dir = Path(self._own_dir.name) if self._own_dir is not None else data_dir
        assert self.data_dir is not None
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (kept for the server's lifetime)
        self.port = 0
        self.start_seconds = 0.0
        self.exit_code: int | None = None
        self.paused = False

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT`` of the running server."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the running server (the supervisor when there are several workers)."""
        if self._process is None:
            raise TargetError(f"{self.name} is not running")
        return self._process.pid

    def start(self) -> OutpostServer:
        """Launch ``outpost serve`` and wait for SERVING; ``start_seconds`` is launch-to-SERVING time."""
        self.port = free_port()
        env = dict(os.environ)
        env.update({f"OUTPOST_{k.upper()}": v for k, v in self.settings.items()})
        env["OUTPOST_ADDR"] = self.target
        env["OUTPOST_DATA_DIR"] = str(self.data_dir)
        command = [str(Path(sys.executable).with_name("outpost")), "serve"]
        if not Path(command[0]).exists():
            command = [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())", "serve"]
        launched = time.monotonic()
        self._process = subprocess.Popen(command, env=env, cwd=_ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_serving(self.target, timeout_s=self._start_timeout_s, process=self._process, poll_s=0.01)
        except TargetError as exc:
            tail = self.log_tail()
            self.stop()
            raise TargetError(f"{self.name}: {exc}\n--- server output ---\n{tail}") from None
        self.start_seconds = time.monotonic() - launched
        return self

    def exited(self) -> int | None:
        """The exit code if the server process has ended (by itself or killed), else None."""
        return None if self._process is None else self._process.poll()

    def pause(self) -> None:
        """SIGSTOP the server's processes, so that its background threads take no CPU from another's run."""
        self._signal_tree(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT the server's processes."""
        self._signal_tree(signal.SIGCONT)
        self.paused = False

    def _signal_tree(self, signum: int) -> None:
        if self._process is None:
            return
        for pid in _tree(self._process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def idle_cpu_share(self, seconds: float = 2.0) -> float:
        """Share of one core the server uses while no call arrives (0 for a server that only waits)."""
        before = self.cpu_seconds()
        time.sleep(seconds)
        return (self.cpu_seconds() - before) / seconds

    def cpu_seconds(self) -> float:
        """CPU seconds the server (all its processes) used so far."""
        return process_tree_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        """Resident memory of the server (all its processes)."""
        return process_tree_rss_bytes(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's combined stdout/stderr."""
        with contextlib.suppress(ValueError, OSError):
            self._log.seek(0)
            return self._log.read()[-chars:].decode("utf-8", "replace")
        return ""

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait; the exit code (0 after a graceful drain)."""
        process, self._process = self._process, None
        if process is None:
            return self.exit_code
        if self.paused:  # a stopped process would not act on SIGTERM
            self._process = process
            self.resume()
            self._process = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.exit_code = process.returncode
        return self.exit_code

    def close(self) -> None:
        """Stop the server and remove its own data directory."""
        self.stop()
        self._log.close()
        if self._own_dir is not None:
            self._own_dir.cleanup()

    def __enter__(self) -> OutpostServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
