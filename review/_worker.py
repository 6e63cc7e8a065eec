"""A bounded hand-off from the scoring hot path to one writer thread, shared by every review sink.

``submit`` only appends to a list under a lock, so a sink's ``record`` costs the copies it makes and nothing
else; serialisation and I/O happen in the writer thread. Memory is bounded by a row budget: beyond it new items
are dropped and counted (``overflow="drop"``, scoring never waits for the disk) or the caller waits for room
(``overflow="block"``, nothing is lost but a slow disk slows scoring). A failing write is retried with backoff;
the items stay counted against the budget meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import structlog

__all__ = ["BackgroundWriter", "Overflow", "WriterStats"]

log = structlog.get_logger("outpost.review")

T = TypeVar("T")
Overflow = Literal["drop", "block"]


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of one writer since it started."""

    submitted_rows: int
    written_rows: int
    dropped_rows: int
    pending_rows: int
    errors: int
    last_error: str


class BackgroundWriter(Generic[T]):
    """Items submitted from any thread, handed in batches to ``consume`` in one daemon thread."""

    def __init__(
        self,
        name: str,
        consume: Callable[[list[T]], None],
        *,
        max_pending_rows: int,
        overflow: Overflow,
        linger_seconds: float,
        tick: Callable[[], None] | None = None,
        tick_seconds: float = 1.0,
    ) -> None:
        if max_pending_rows < 1:
            raise ValueError(f"max_pending_rows must be >= 1, got {max_pending_rows}")
        if overflow not in ("drop", "block"):
            raise ValueError(f'overflow must be "drop" or "block", got {overflow!r}')
        self._name = name
        self._consume = consume
        self._tick = tick
        self._tick_seconds = tick_seconds
        self._max_rows = max_pending_rows
        self._overflow = overflow
        self._linger = linger_seconds
        self._cond = threading.Condition()
        self._queue: list[tuple[int, int, T]] = []  # (seq, rows, item)
        self._pending_rows = 0
        self._seq = 0
        self._done_seq = 0
        self._closing = False
        self._urgent = False
        self._lingering = False
        self._submitted = self._written = self._dropped = self._errors = 0
        self._last_error = ""
        self._thread = threading.Thread(target=self._loop, name=f"outpost-{name}", daemon=True)
        self._thread.start()

    # -- called from the hot path --------------------------------------------------------------------------
    def submit(self, item: T, rows: int) -> bool:
        """Queue ``item`` (worth ``rows`` rows of the budget); False when it was dropped for lack of room."""
        with self._cond:
            if self._closing:
                self._dropped += rows
                return False
            if self._pending_rows + rows > self._max_rows and self._pending_rows > 0:
                if self._overflow == "drop":
                    self._dropped += rows
                    return False
                self._urgent = True
                self._cond.notify_all()
                while self._pending_rows + rows > self._max_rows and self._pending_rows > 0 and not self._closing:
                    self._cond.wait()
            self._seq += 1
            self._queue.append((self._seq, rows, item))
            self._pending_rows += rows
            self._submitted += rows
            if not self._lingering or self._pending_rows >= self._max_rows // 2:
                self._cond.notify_all()
            return True

    # -- control -------------------------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write everything submitted so far; True when done within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._seq
            self._urgent = True
            self._cond.notify_all()
            while self._done_seq < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closing

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                submitted_rows=self._submitted, written_rows=self._written, dropped_rows=self._dropped,
                pending_rows=self._pending_rows, errors=self._errors, last_error=self._last_error,
            )

    # -- the writer thread ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        backoff = 0.0
        carry: list[tuple[int, int, T]] = []
        next_tick = time.monotonic() + self._tick_seconds
        while True:
            with self._cond:
                while not self._queue and not carry and not self._closing:
                    remaining = next_tick - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, self._queue = carry + self._queue, []
                closing, urgent = self._closing, self._urgent
                self._urgent = False
            carry = []
            if batch:
                if self._write(batch):
                    backoff = 0.0
                elif closing:
                    self._finish(batch, written=False)
                else:
                    backoff = min(max(backoff * 2, 0.1), 5.0)
                    carry = batch
            if closing or time.monotonic() >= next_tick:
                # Always move the next tick on, with or without a tick callback: otherwise the wait above
                # would find its deadline passed forever and spin.
                next_tick = time.monotonic() + self._tick_seconds
                if self._tick is not None:
                    try:
                        self._tick()
                    except Exception as exc:  # same reason as in _write
                        log.error("review_writer_tick_failed", writer=self._name, error=str(exc))
            if closing and not carry:
                with self._cond:
                    if not self._queue:
                        self._cond.notify_all()
                        return
                continue
            if carry:
                self._pause(backoff, retrying=True)
            elif batch and not urgent and self._linger > 0:
                # Let rows accumulate so that each write (and fsync) covers many scored batches.
                self._pause(self._linger, retrying=False)

    def _write(self, batch: list[tuple[int, int, T]]) -> bool:
        try:
            self._consume([item for _, _, item in batch])
        except Exception as exc:  # the hot path must never see a writer failure: count, log, retry
            with self._cond:
                self._errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
            log.error("review_writer_failed", writer=self._name, rows=sum(r for _, r, _ in batch), error=str(exc))
            return False
        self._finish(batch, written=True)
        return True

    def _pause(self, seconds: float, *, retrying: bool) -> None:
        deadline = time.monotonic() + seconds
        with self._cond:
            self._lingering = True
            try:
                while not self._closing and not self._urgent and (
                    retrying or self._pending_rows < self._max_rows // 2
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            finally:
                self._lingering = False

    def _finish(self, batch: list[tuple[int, int, T]], *, written: bool) -> None:
        rows = sum(r for _, r, _ in batch)
        with self._cond:
            self._pending_rows -= rows
            if written:
                self._written += rows
            else:
                self._dropped += rows
            self._done_seq = max(self._done_seq, batch[-1][0])
            self._cond.notify_all()
