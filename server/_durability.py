"""Group commit: a score is acknowledged only after the state change behind it is durable.

Batches are committed to the feature engine's log buffer on the event loop; one worker thread writes and
fsyncs the buffer while the loop keeps scoring, and every call waiting on a sync that covers its batch is
released together. When the calls being settled are the only ones in flight, nothing else needs the loop while
the fsync runs, so it runs inline on the loop: that saves the hand-offs to and from the worker thread (about
five context switches and 100-300 µs of CPU per call at one call in flight, docs/benchmarks.md).

A slow disk must not take the event loop with it: once a sync has taken longer than ``INLINE_SYNC_MAX_S``, syncs
leave the loop for the worker thread (where the hand-offs cost little beside the sync) until one is fast again. And
a sync on the worker thread that runs longer than ``stall_s`` marks the commit ``stalled``: the server then reports
NOT_SERVING and refuses new calls with UNAVAILABLE (they change nothing), while the calls already waiting keep
waiting for their sync, until it completes.

Policies: ``fsync`` (default: survives power loss), ``write`` (written to the OS before the
reply: survives a process crash, not a power loss), ``none`` (for benchmarks of the pure compute path).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable

import structlog

__all__ = ["INLINE_SYNC_MAX_S", "GroupCommit"]

log = structlog.get_logger("outpost.durability")

# A sync slower than this leaves the loop: the hand-offs it saves (100-300 µs) are then small beside the sync.
INLINE_SYNC_MAX_S = 0.010


class GroupCommit:
    """Sequence numbers for committed batches, and waiters released when a sync covers them."""

    def __init__(
        self,
        sync: Callable[[bool], int],
        mode: str,
        *,
        observe: Callable[[float], None] | None = None,
        in_flight: Callable[[], int] | None = None,
        stall_s: float = 2.0,
    ) -> None:
        self._sync = sync
        self._mode = mode
        self._in_flight = in_flight  # calls in flight in the whole server; None: never fsync inline
        self._observe = observe  # called with the seconds of every sync (write + fsync)
        self._stall_s = stall_s
        self._last_sync_s = 0.0  # how long the last sync took
        self.stalled = False  # a sync on the worker thread has run longer than stall_s and not finished yet
        self.on_stall: Callable[[bool], None] | None = None  # called when ``stalled`` changes
        self._committed = 0
        self._durable = 0
        self._task: asyncio.Task[None] | None = None
        self._round: asyncio.Future[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="outpost-sync")
        self.syncs = 0
        self.inline_syncs = 0  # fsyncs run on the loop because nothing else was in flight

    def mark(self) -> int:
        """Call right after ``engine.commit``: the sequence number that must become durable."""
        self._committed += 1
        return self._committed

    def settle(self, seq: int, calls: int) -> bool:
        """Make ``seq`` durable now, on the calling thread, where that beats a hand-off; False: ``await wait(seq)``.

        ``calls`` is how many calls in flight wait on ``seq``. With ``write`` (a write into the OS page cache takes
        microseconds) it always settles; with ``fsync`` only when those calls are all the server has in flight and
        no sync is running on the worker thread.
        """
        if self._mode == "none" or self._durable >= seq:
            return True
        if self._mode == "fsync":
            if self._in_flight is None or self._in_flight() > calls:
                return False
            if self._task is not None and not self._task.done():
                return False
            if self._last_sync_s > INLINE_SYNC_MAX_S:
                return False  # the disk is slow: keep the loop free for health checks and other calls
            self.inline_syncs += 1
        target = self._committed
        self._timed_sync(self._mode == "fsync")
        self.syncs += 1
        self._durable = target
        return True

    async def wait(self, seq: int, calls: int = 1) -> None:
        """Return once everything up to ``seq`` is durable under the configured policy (see ``settle``)."""
        if self.settle(seq, calls):
            return
        while self._durable < seq:
            if self._task is None or self._task.done():
                self._round = asyncio.get_running_loop().create_future()
                self._task = asyncio.create_task(self._run())
            assert self._round is not None
            await asyncio.shield(self._round)

    def _timed_sync(self, fsync: bool) -> None:
        started = time.perf_counter()
        try:
            self._sync(fsync)
        finally:
            self._last_sync_s = time.perf_counter() - started
        if self._observe is not None:
            self._observe(self._last_sync_s)

    def _set_stalled(self, stalled: bool) -> None:
        if stalled == self.stalled:
            return
        self.stalled = stalled
        if stalled:
            log.error("state_sync_stalled", seconds=self._stall_s,
                      hint="the state log's disk has not finished a sync: new calls get UNAVAILABLE until it does")
        else:
            log.warning("state_sync_recovered", seconds=round(self._last_sync_s, 3))
        if self.on_stall is not None:
            self.on_stall(stalled)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._durable < self._committed:
                target = self._committed
                watchdog = loop.call_later(self._stall_s, self._set_stalled, True)
                try:
                    await loop.run_in_executor(self._executor, self._timed_sync, self._mode == "fsync")
                finally:
                    watchdog.cancel()
                    self._set_stalled(False)
                self.syncs += 1
                self._durable = target
                done, self._round = self._round, loop.create_future()
                if done is not None and not done.done():
                    done.set_result(None)
        except BaseException as exc:
            if self._round is not None and not self._round.done():
                self._round.set_exception(exc)
                self._round.exception()  # mark retrieved: each waiter re-raises it
            raise
        finally:
            if self._round is not None and not self._round.done():
                self._round.set_result(None)

    async def flush(self) -> None:
        """Make everything committed so far durable (used at shutdown)."""
        await self.wait(self._committed)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
