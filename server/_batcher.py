"""Micro-batching: concurrent Score calls are coalesced into one pipeline run and answered individually.

grpc.aio hands the application one new call per event-loop round trip, so calls never pile up by themselves:
a call that does not wait for company almost always finds none, and pays the pipeline's fixed cost alone. When
it is the only call in the server, it is scored at once in its own task (a batch of one, with no future and no
loop round trip); otherwise it is queued for one loop turn, so that calls handed over in the same turn join it.
Waiting for company (at most ``max_wait_us``, or until ``max_size`` calls) saves that CPU but costs each call
the wait, so a batch waits only when both hold:

- the event loop is busy: its thread used at least ``busy_share`` of the wall clock lately (measured with
  ``time.thread_time``, smoothed, with hysteresis down to half of it). Below that, CPU is not what limits
  latency and calls go at once;
- waiting is *productive*: a wait that gathers fewer than ``_PRODUCTIVE_ROWS`` calls (a lone caller, or a few
  callers in lockstep) switches waiting off for a back-off that doubles up to ``_MAX_BACKOFF_NS``; after it, one
  batch probes again. With two or three callers, each waiting for its reply before it sends again, a wait only
  holds the calls that would have come anyway: it gathers them, but the loop idles meanwhile and every call pays
  the wait.

A wait ends at ``max_wait_us``, when ``max_size`` calls are queued, or as soon as the loop idles: every
``_CHECK_NS`` (or less) the wait looks at the loop thread's CPU time over the last check; below ``idle_share``
of the wall clock, no more calls are being taken in (every caller is already queued or elsewhere), so waiting
longer would only leave the CPU idle. Under saturation the loop stays busy taking calls in, and the wait runs
its full length, which lets batches grow to many calls.

A few callers in lockstep (a gateway's 4 or 8 calls in flight) are all in long before that check: the loop then
sleeps, and its timers cannot wake it sooner than a millisecond (epoll's resolution). So once a wait holds as many
calls as each of the last two waits gathered, it polls the loop without sleeping, and ends unless another call
joins meanwhile (then it waits on as usual). Closed loop, same build alternating, 2-3 runs each: 4 callers
1,155-1,202 -> 1,458-1,687 calls/s, 8 callers 1,563-1,599 -> 1,893-2,019, 32 callers no worse.

How long it polls adapts: from ``_QUICK_CHECK_NS`` down to ``_QUICK_MIN_NS`` by a quarter each time nobody joins
(the CPU it burns is the callers' wait), and back up to twice the delay at which a call did join. Four callers of
one process never have a late joiner, so their waits end 40 µs after the last call instead of 200. Same build
alternating, 4 pairs: 4 callers 1,107-1,712 -> 1,389-1,747 calls/s, 8 callers 1,357-2,183 -> 1,676-2,281, 32
callers 2,937 and 3,104 -> 3,062 and 2,806.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from outpost.v1 import outpost_pb2 as pb

from features import TXN_DTYPE
from server._durability import GroupCommit
from server._pipeline import ScoringPipeline
from server._policy import ActionPolicy
from server._requests import FieldViolation, RequestValidator, now_us, review_extra
from server._responses import build_responses

__all__ = ["BatchStats", "DeadlineExpiredError", "InvalidRequestError", "MicroBatcher"]

# Waits gathering fewer calls than this back off. Measured with 2 callers in a closed loop: 2 -> 4 doubled the calls
# per second (527-622 -> 1,103-1,228) and halved p50; 4, 8 and 32 callers and an open loop at 400 and 1,400/s did
# not change beyond the machine's noise.
_PRODUCTIVE_ROWS = 4
_MIN_BACKOFF_NS = 5_000_000
_MAX_BACKOFF_NS = 1_000_000_000
_LOAD_PERIOD_NS = 20_000_000  # the loop's busy share is sampled at most this often, and smoothed
_CHECK_NS = 1_000_000  # a waiting batch checks whether the loop idles this often
_QUICK_CHECK_NS = 200_000  # a wait holding as many calls as the last two ends unless another joins within this
_QUICK_MIN_NS = 40_000  # ... and the least a quick check polls, once callers keep being all in


class DeadlineExpiredError(Exception):
    """The caller's deadline passed while the call waited in the queue: it was not scored."""


class InvalidRequestError(Exception):
    """The call's request failed validation: it was not scored; ``violations`` name every bad field."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__(f"{len(violations)} invalid field(s)")
        self.violations = violations


@dataclass(slots=True)
class _Call:
    request: pb.ScoreRequest
    data: bytes  # the request's wire bytes, which the compiled decoder validates and encodes with the batch's
    use_model: bool
    degraded_reason: str
    started_ns: int


@dataclass(slots=True)
class _Pending(_Call):
    deadline_ns: int  # perf_counter_ns by which the caller stops waiting; 0 = no deadline
    future: asyncio.Future[pb.ScoreResponse]


@dataclass(slots=True)
class BatchStats:
    """Counters of the batcher since start: batches run, rows scored, waits made and waits that gathered too few calls
    to pay (fewer than ``_PRODUCTIVE_ROWS``)."""

    batches: int = 0
    rows: int = 0
    waits: int = 0
    idle_waits: int = 0
    early_ends: int = 0  # waits ended before max_wait because the loop idled
    alone: int = 0  # batches of the only call in the server, scored in its own task (no reason to wait)
    all_in: int = 0  # waits ended when they held as many calls as the last two and no other joined soon after


class MicroBatcher:
    """Queue of pending Score calls drained in batches on the event loop."""

    def __init__(
        self,
        pipeline: ScoringPipeline,
        policy: Callable[[], ActionPolicy],
        commit: GroupCommit,
        validator: RequestValidator,
        *,
        max_size: int,
        max_wait_us: int,
        busy_share: float = 0.0,
        idle_share: float = 0.0,
        in_flight: Callable[[], int],
    ) -> None:
        self._pipeline = pipeline
        self._policy = policy
        self._commit = commit
        self._validator = validator
        self._max_size = max_size
        self._max_wait = max_wait_us / 1e6
        self._busy_share = busy_share
        self._idle_share = idle_share
        self._in_flight = in_flight  # Score calls the server holds now, this one included
        self._check_ns = min(_CHECK_NS, max_wait_us * 1000)
        self._wait_end_ns = 0  # perf_counter_ns at which the current wait ends at the latest
        self._check_mark = (0, 0)  # (wall, loop-thread CPU) ns at the wait's last check
        self._busy = False  # hysteresis state of the busy share (busy_share <= 0: always busy, see _is_busy)
        self.load = 0.0  # smoothed share of wall-clock time the event loop's thread was on a CPU
        self._load_mark: tuple[int, int] | None = None  # (wall, loop-thread CPU) ns at the last sample
        self._queue: list[_Pending] = []
        self._scheduled = False  # a batch is forming
        self._waiting = False  # ... and its first call waits for company
        self._backoff_ns = 0  # next back-off after a wait that gathered nobody
        self._wait_allowed_at = 0  # perf_counter_ns before which batches do not wait (back-off)
        self._timer: asyncio.Handle | None = None
        self._acks: set[asyncio.Task[None]] = set()
        self._gathered = (0, 0)  # calls gathered by the last two waits
        self._quick_ns = _QUICK_CHECK_NS  # how long the next quick check polls
        self.stats = BatchStats()

    async def score(
        self,
        request: pb.ScoreRequest,
        data: bytes,
        *,
        use_model: bool,
        degraded_reason: str,
        time_remaining: float | None = None,
    ) -> pb.ScoreResponse:
        now = time.perf_counter_ns()
        waiting = False
        if not self._scheduled:
            waiting = self._max_wait > 0 and now >= self._wait_allowed_at and self._is_busy(now)
            if not waiting and self._in_flight() <= 1:
                # The only call in the server, and no reason to wait: score it here, without a loop round trip.
                return await self._score_alone(_Call(request, data, use_model, degraded_reason, now))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[pb.ScoreResponse] = loop.create_future()
        deadline = now + int(time_remaining * 1e9) if time_remaining is not None else 0
        self._queue.append(_Pending(request, data, use_model, degraded_reason, now, deadline, future))
        if not self._scheduled:
            self._scheduled = True
            self._waiting = waiting
            if not waiting:  # other calls are in the server: those handed over in this loop turn join the batch
                self._timer = loop.call_soon(self._drain)
            else:
                self._wait_end_ns = now + int(self._max_wait * 1e9)
                self._wait_on(now)
        elif self._waiting:
            if len(self._queue) == self._max_size:
                assert self._timer is not None
                self._timer.cancel()  # full: no reason to wait any longer
                self._timer = loop.call_soon(self._drain)
            elif len(self._queue) == self._gathered[0] == self._gathered[1] >= _PRODUCTIVE_ROWS:
                # The callers may all be in (a wait reaches this size once): end soon unless another call joins.
                assert self._timer is not None
                self._timer.cancel()
                self._timer = loop.call_soon(self._spin, len(self._queue), now, now + self._quick_ns)
        return await future

    def _spin(self, gathered: int, since_ns: int, until_ns: int) -> None:
        """A wait holding as many calls as the last two: drain unless another joins by ``until_ns``.

        The loop polls without sleeping meanwhile (its timers cannot wake it sooner than a millisecond). The next
        quick check is shorter when nobody joined, and long enough for a caller that did (see the module doc)."""
        now = time.perf_counter_ns()
        if len(self._queue) > gathered:  # more are coming: wait on as usual
            self._quick_ns = min(max(self._quick_ns, 2 * (now - since_ns)), _QUICK_CHECK_NS)
            self._wait_on(now)
        elif now >= until_ns:
            self.stats.all_in += 1
            self._quick_ns = max(_QUICK_MIN_NS, self._quick_ns * 3 // 4)
            self._drain()
        else:
            self._timer = asyncio.get_running_loop().call_soon(self._spin, gathered, since_ns, until_ns)

    def _wait_on(self, now: int) -> None:
        """Go on waiting: look for an idle loop within ``_check_ns``, or (no idle checks) drain at the wait's end."""
        loop = asyncio.get_running_loop()
        left = max(self._wait_end_ns - now, 0)
        if self._idle_share > 0:
            self._check_mark = (now, time.thread_time_ns())
            self._timer = loop.call_later(min(self._check_ns, left) / 1e9, self._check_wait)
        else:
            self._timer = loop.call_later(left / 1e9, self._drain)

    def _check_wait(self) -> None:
        """During a wait: drain when its time is up or the loop idled since the last check, else look again."""
        now = time.perf_counter_ns()
        cpu = time.thread_time_ns()
        wall0, cpu0 = self._check_mark
        if now >= self._wait_end_ns:
            self._drain()
            return
        if cpu - cpu0 < self._idle_share * (now - wall0):
            self.stats.early_ends += 1
            self._drain()
            return
        self._wait_on(now)

    def _is_busy(self, now: int) -> bool:
        if self._busy_share <= 0.0:
            return True
        if self._load_mark is None:  # first call, on the loop's thread (the batcher is built on another)
            self._load_mark = (now, time.thread_time_ns())
            return self._busy
        wall0, cpu0 = self._load_mark
        if now - wall0 >= _LOAD_PERIOD_NS:
            cpu = time.thread_time_ns()
            self.load = 0.5 * self.load + 0.5 * min((cpu - cpu0) / (now - wall0), 1.0)
            self._load_mark = (now, cpu)
            if self.load >= self._busy_share:
                self._busy = True
            elif self.load < self._busy_share / 2:
                self._busy = False
        return self._busy

    def _learn(self, rows: int) -> None:
        """After a wait: keep waiting while waits gather enough company; back off (doubling) while they do not."""
        self._gathered = (rows, self._gathered[0])
        self.stats.waits += 1
        if rows >= _PRODUCTIVE_ROWS:
            self._backoff_ns = 0
            return
        self.stats.idle_waits += 1
        self._backoff_ns = min(max(2 * self._backoff_ns, _MIN_BACKOFF_NS), _MAX_BACKOFF_NS)
        self._wait_allowed_at = time.perf_counter_ns() + self._backoff_ns

    def _drain(self) -> None:
        self._scheduled = False
        self._timer = None
        if self._waiting:
            self._waiting = False
            self._learn(len(self._queue))
        while self._queue:
            batch, self._queue = self._queue[: self._max_size], self._queue[self._max_size :]
            now = time.perf_counter_ns()
            live = []
            for p in batch:
                if p.future.done():  # cancelled by the caller: not scored
                    continue
                if p.deadline_ns and now >= p.deadline_ns:
                    # Under overload, scoring calls nobody waits for any more would only starve the live ones.
                    p.future.set_exception(DeadlineExpiredError())
                    continue
                live.append(p)
            batch = live
            if batch:
                self._run(batch)

    async def _score_alone(self, call: _Call) -> pb.ScoreResponse:
        """A batch of one, run in the caller's own task: failures raise to the caller as a queued call's would.

        Its request is validated in Python (``check_and_encode_row``): for one request that costs less than the
        compiled decoder's fixed cost."""
        violations, row = self._validator.check_and_encode_row(call.request, now_us())
        if violations:
            raise InvalidRequestError(violations)
        seq, (response,), record = self._decide([call], np.array([row], dtype=TXN_DTYPE))
        self.stats.alone += 1
        try:
            if not self._commit.settle(seq, 1):
                await self._commit.wait(seq, 1)
        finally:
            asyncio.get_running_loop().call_soon(record)  # runs once this reply is handed to gRPC
        response.latency_us = (time.perf_counter_ns() - call.started_ns) // 1000
        return response

    def _decide(
        self, batch: Sequence[_Call], records: np.ndarray
    ) -> tuple[int, list[pb.ScoreResponse], Callable[[], None]]:
        """Score ``batch`` (its validated ``records``) through the pipeline: its commit sequence number, one response
        per call, and the call that hands the decisions to the pipeline's sinks. The batcher makes that call after the
        replies, which do not wait on the decision log, the alert queue or the metrics (about 20 µs for a lone call,
        hot)."""
        use_model = np.fromiter((p.use_model for p in batch), dtype=bool, count=len(batch))
        requests = [p.request for p in batch]
        ids = [r.transaction.transaction_id for r in requests]
        decisions = self._pipeline.run(
            records, use_model=use_model, txn_ids=ids, extra=review_extra(requests), record=False
        )
        record = functools.partial(self._pipeline.record, ids, records, decisions)
        seq = self._commit.mark()
        try:
            responses = build_responses(
                decisions,
                requests,
                policy=self._policy(),
                degraded_reason=[p.degraded_reason for p in batch],
                transaction_ids=ids,
            )
        except BaseException:
            record()  # the batch is committed: the sinks see it even though its calls fail
            raise
        self.stats.batches += 1
        self.stats.rows += len(batch)
        return seq, responses, record

    def _validated(self, batch: list[_Pending]) -> tuple[list[_Pending], np.ndarray]:
        """The calls whose requests are valid, with their records; the others fail with their violations."""
        records, rejected = self._validator.check_and_encode_each(
            [p.request for p in batch], [p.data for p in batch], now_us()
        )
        if not rejected:
            return batch, records
        for i, violations in rejected.items():
            batch[i].future.set_exception(InvalidRequestError(violations))
        kept = [i for i in range(len(batch)) if i not in rejected]
        return [batch[i] for i in kept], records.take(kept)

    def _run(self, batch: list[_Pending]) -> None:
        try:
            batch, records = self._validated(batch)
            if not batch:
                return
            seq, responses, record = self._decide(batch, records)
        except Exception as exc:
            self._fail(batch, exc)
            return
        loop = asyncio.get_running_loop()
        try:
            settled = self._commit.settle(seq, len(batch))
        except Exception as exc:
            self._fail(batch, exc)
            loop.call_soon(record)
            return
        if settled:
            self._answer(batch, responses)
            loop.call_soon(record)  # after the callers' tasks, which _answer woke first
            return
        # Keep a reference: the loop only holds tasks weakly.
        task = loop.create_task(self._ack(batch, responses, seq, record))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _ack(
        self, batch: list[_Pending], responses: list[pb.ScoreResponse], seq: int, record: Callable[[], None]
    ) -> None:
        try:
            await self._commit.wait(seq, len(batch))
        except Exception as exc:
            self._fail(batch, exc)
        else:
            self._answer(batch, responses)
        finally:
            asyncio.get_running_loop().call_soon(record)

    @staticmethod
    def _fail(batch: list[_Pending], exc: Exception) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_exception(exc)

    @staticmethod
    def _answer(batch: list[_Pending], responses: list[pb.ScoreResponse]) -> None:
        now = time.perf_counter_ns()
        for p, response in zip(batch, responses, strict=True):
            response.latency_us = (now - p.started_ns) // 1000
            if not p.future.done():
                p.future.set_result(response)
