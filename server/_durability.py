"""Group commit: a score is acknowledged only after the state change behind it is durable.

Batches are committed to the feature engine's log buffer on the event loop; one worker thread writes and
fsyncs the buffer while the loop keeps scoring, and every call waiting on a sync that covers its batch is
released together. When the calls being settled are the only ones in flight, nothing else needs the loop while
the fsync runs, so it runs inline on the loop: that saves the hand-offs to and from the worker thread (about
five context switches and 100-300 µs of CPU per call at one call in flight, docs/benchmarks.md).

Policies: ``fsync`` (default: survives power loss), ``write`` (written to the OS before the
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
        self,
        sync: Callable[[bool], int],
        mode: str,
        *,
        observe: Callable[[float], None] | None = None,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self._sync = sync
        self._mode = mode
        self._in_flight = in_flight  # calls in flight in the whole server; None: never fsync inline
        self._observe = observe  # called with the seconds of every sync (write + fsync)
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
