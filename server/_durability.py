"""Group commit: a score is acknowledged only after the state change behind it is durable.

Batches are committed to the feature engine's log buffer on the event loop; one worker thread writes and
fsyncs the buffer while the loop keeps scoring, and every call waiting on a sync that covers its batch is
released together. Policies: ``fsync`` (default: survives power loss), ``write`` (written to the OS before the
reply: survives a process crash, not a power loss), ``none`` (for benchmarks of the pure compute path).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable

__all__ = ["GroupCommit"]


class GroupCommit:
    """Sequence numbers for committed batches, and waiters released when a sync covers them."""

    def __init__(
        self, sync: Callable[[bool], int], mode: str, *, observe: Callable[[float], None] | None = None
    ) -> None:
        self._sync = sync
        self._mode = mode
        self._observe = observe  # called with the seconds of every sync (write + fsync)
        self._committed = 0
        self._durable = 0
        self._task: asyncio.Task[None] | None = None
        self._round: asyncio.Future[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="outpost-sync")
        self.syncs = 0

    def mark(self) -> int:
        """Call right after ``engine.commit``: the sequence number that must become durable."""
        self._committed += 1
        return self._committed

    async def wait(self, seq: int) -> None:
        """Return once everything up to ``seq`` is durable under the configured policy."""
        if self._mode == "none":
            return
        if self._mode == "write":
            # A write into the OS page cache takes microseconds: do it inline rather than hop to a thread.
            if self._durable < seq:
                target = self._committed
                self._timed_sync(False)
                self.syncs += 1
                self._durable = target
            return
        while self._durable < seq:
            if self._task is None or self._task.done():
                self._round = asyncio.get_running_loop().create_future()
                self._task = asyncio.create_task(self._run())
            assert self._round is not None
            await asyncio.shield(self._round)

    def _timed_sync(self, fsync: bool) -> None:
        started = time.perf_counter()
        self._sync(fsync)
        if self._observe is not None:
            self._observe(time.perf_counter() - started)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._durable < self._committed:
                target = self._committed
                await loop.run_in_executor(self._executor, self._timed_sync, self._mode == "fsync")
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
