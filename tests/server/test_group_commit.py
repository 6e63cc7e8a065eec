"""Group commit: where each sync runs (inline on the loop or on the worker thread) and what waiters see."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from server._durability import INLINE_SYNC_MAX_S, GroupCommit


class _FileLog:
    """A real log file: each sync appends one line and fsyncs it, remembering the thread it ran on."""

    def __init__(self, path: Path, fail: bool = False) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.threads: list[str] = []
        self.fail = fail
        self.slow_s = 0.0  # a slow disk: each sync takes at least this long
        self.stall: threading.Event | None = None  # a stalled disk: each sync waits until this is set

    def sync(self, fsync: bool) -> int:
        if self.fail:
            raise OSError(28, "No space left on device")
        if self.stall is not None:
            self.stall.wait(60)
        time.sleep(self.slow_s)
        self.threads.append(threading.current_thread().name)
        os.write(self._fd, b"block\n")
        if fsync:
            os.fsync(self._fd)
        return 1


def test_a_lone_call_is_synced_inline_on_the_loop(tmp_path: Path) -> None:
    """With only the waiting call in flight, the fsync runs on the loop's own thread: no hand-off."""
    log = _FileLog(tmp_path / "log")
    commit = GroupCommit(log.sync, "fsync", in_flight=lambda: 1)

    async def main() -> str:
        await commit.wait(commit.mark(), calls=1)
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    commit.close()
    assert log.threads == [loop_thread]
    assert commit.inline_syncs == 1 and commit.syncs == 1


def test_other_calls_in_flight_send_the_sync_to_the_worker(tmp_path: Path) -> None:
    """With more calls in flight than wait on the sync, it runs on the worker thread and the loop stays free."""
    log = _FileLog(tmp_path / "log")
    commit = GroupCommit(log.sync, "fsync", in_flight=lambda: 5)

    async def main() -> None:
        await asyncio.gather(commit.wait(commit.mark(), calls=2), commit.wait(commit.mark(), calls=3))

    asyncio.run(main())
    commit.close()
    assert log.threads and all(name.startswith("outpost-sync") for name in log.threads)
    assert commit.inline_syncs == 0
    assert (tmp_path / "log").read_bytes().count(b"block") == len(log.threads)


def test_settle_leaves_a_running_worker_sync_alone(tmp_path: Path) -> None:
    """While the worker syncs, a lone call does not fsync beside it: it waits for the worker's round."""
    log = _FileLog(tmp_path / "log")
    in_flight = [3]
    commit = GroupCommit(log.sync, "fsync", in_flight=lambda: in_flight[0])

    async def main() -> None:
        first = asyncio.ensure_future(commit.wait(commit.mark(), calls=1))
        await asyncio.sleep(0)  # the worker round starts
        in_flight[0] = 1
        assert not commit.settle(commit.mark(), calls=1)
        await first

    asyncio.run(main())
    commit.close()
    assert commit.inline_syncs == 0


def test_a_failed_inline_sync_reaches_the_caller(tmp_path: Path) -> None:
    """A sync that fails inline raises to the waiting call, and nothing is counted as durable."""
    log = _FileLog(tmp_path / "log", fail=True)
    commit = GroupCommit(log.sync, "fsync", in_flight=lambda: 1)
    seq = commit.mark()

    async def main() -> None:
        await commit.wait(seq, calls=1)

    with pytest.raises(OSError, match="No space"):
        asyncio.run(main())
    log.fail = False
    asyncio.run(main())  # the next attempt syncs what the failed one did not
    commit.close()
    assert len(log.threads) == 1


def test_without_an_in_flight_count_fsync_always_uses_the_worker(tmp_path: Path) -> None:
    """A GroupCommit that cannot see the calls in flight never blocks the loop on an fsync."""
    log = _FileLog(tmp_path / "log")
    commit = GroupCommit(log.sync, "fsync")

    async def main() -> None:
        await commit.wait(commit.mark())

    asyncio.run(main())
    commit.close()
    assert all(name.startswith("outpost-sync") for name in log.threads) and commit.inline_syncs == 0


def test_write_mode_writes_inline_and_none_never_syncs(tmp_path: Path) -> None:
    """``write`` writes on the calling thread whatever is in flight; ``none`` never calls the log."""
    written = _FileLog(tmp_path / "write")
    skipped = _FileLog(tmp_path / "none")
    write = GroupCommit(written.sync, "write", in_flight=lambda: 50)
    none = GroupCommit(skipped.sync, "none", in_flight=lambda: 1)

    async def main() -> str:
        await write.wait(write.mark(), calls=1)
        await none.wait(none.mark(), calls=1)
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    write.close()
    none.close()
    assert written.threads == [loop_thread] and skipped.threads == []


def test_after_a_slow_sync_lone_calls_leave_the_loop_until_syncs_are_fast_again(tmp_path: Path) -> None:
    """A sync slower than INLINE_SYNC_MAX_S sends the next lone call's sync to the worker, keeping the loop free."""
    log = _FileLog(tmp_path / "log")
    commit = GroupCommit(log.sync, "fsync", in_flight=lambda: 1)
    log.slow_s = 2 * INLINE_SYNC_MAX_S

    async def main() -> str:
        await commit.wait(commit.mark(), calls=1)  # inline, and slow
        log.slow_s = 0.0
        await commit.wait(commit.mark(), calls=1)  # on the worker, and fast
        await commit.wait(commit.mark(), calls=1)  # inline again
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    commit.close()
    assert log.threads[0] == loop_thread and log.threads[1].startswith("outpost-sync") and log.threads[2] == loop_thread
    assert commit.inline_syncs == 2


def test_a_stalled_sync_marks_the_commit_stalled_until_it_completes(tmp_path: Path) -> None:
    """A worker sync running past stall_s sets ``stalled`` (and tells on_stall); its completion clears it."""
    log = _FileLog(tmp_path / "log")
    log.stall = threading.Event()
    commit = GroupCommit(log.sync, "fsync", in_flight=lambda: 2, stall_s=0.05)
    changes: list[bool] = []

    async def main() -> None:
        stalled = asyncio.Event()

        def on_stall(value: bool) -> None:
            changes.append(value)
            stalled.set()

        commit.on_stall = on_stall
        waiter = asyncio.ensure_future(commit.wait(commit.mark(), calls=1))
        await asyncio.wait_for(stalled.wait(), 30)
        assert commit.stalled and not waiter.done()
        assert log.stall is not None
        log.stall.set()
        await asyncio.wait_for(waiter, 30)

    asyncio.run(main())
    commit.close()
    assert changes == [True, False] and not commit.stalled
    assert commit.syncs == 1 and len(log.threads) == 1
