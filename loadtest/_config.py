"""What one load-test run does: a frozen, keyword-only configuration, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from loadtest._errors import ConfigError

__all__ = ["LoadTestConfig", "Method"]

Method = Literal["Score", "ScoreBatch"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadTestConfig:
    """One run against ``target``: open loop at ``rate`` calls/s, or closed loop with ``concurrency`` calls in flight.

    Exactly one of ``rate`` and ``concurrency`` is set. The run lasts ``warmup_s`` (not measured) plus
    ``duration_s`` (measured); calls still in flight at the end are awaited (at most ``deadline_ms``) and
    counted, but only calls that complete inside the measured window count towards the achieved rate.
    """

    target: str
    rate: float | None = None
    concurrency: int | None = None
    duration_s: float = 10.0
    warmup_s: float = 2.0
    processes: int = 1
    deadline_ms: float = 2000.0
    method: Method = "Score"
    batch_size: int = 100
    max_in_flight: int = 20_000  # per client process, open loop: beyond it a call is counted as not sent
    connect_timeout_s: float = 10.0  # how long each client process waits for its channel to connect
    # Closed loop: when the pre-built payloads run out, send them again instead of stopping. Only for a server
    # that keeps no state (the baseline): Outpost would see the same transaction ids twice.
    cycle_payloads: bool = False

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.concurrency is None):
            raise ConfigError("set exactly one of --rate (open loop, calls/s) and --concurrency (closed loop)")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"--rate must be > 0 calls/s, got {self.rate}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"--concurrency must be a whole number >= 1, got {self.concurrency}")
        if not self.duration_s > 0:
            raise ConfigError(f"--duration must be > 0 seconds, got {self.duration_s}")
        if self.warmup_s < 0:
            raise ConfigError(f"--warmup must be >= 0 seconds, got {self.warmup_s}")
        if self.processes < 1:
            raise ConfigError(f"--processes must be a whole number >= 1, got {self.processes}")
        if self.concurrency is not None and self.concurrency < self.processes:
            raise ConfigError(
                f"--concurrency {self.concurrency} is below --processes {self.processes}: "
                "every client process needs at least one call in flight"
            )
        if not self.deadline_ms > 0:
            raise ConfigError(f"--deadline-ms must be > 0, got {self.deadline_ms}")
        if self.method not in ("Score", "ScoreBatch"):
            raise ConfigError(f"--method must be Score or ScoreBatch, got {self.method!r}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be a whole number >= 1, got {self.batch_size}")
        if self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if not self.connect_timeout_s > 0:
            raise ConfigError(f"connect_timeout_s must be > 0, got {self.connect_timeout_s}")
        host, sep, port = self.target.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"--target must be HOST:PORT (e.g. 127.0.0.1:50051), got {self.target!r}")

    @property
    def open_loop(self) -> bool:
        """True for a constant offered rate, False for a fixed number of calls in flight."""
        return self.rate is not None

    @property
    def transactions_per_call(self) -> int:
        """How many transactions one call carries."""
        return self.batch_size if self.method == "ScoreBatch" else 1
