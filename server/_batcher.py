"""Micro-batching: concurrent Score calls are coalesced into one pipeline run and answered individually.

A call that finds no batch forming starts one on the next loop iteration, so at low load nobody waits for
company; calls that arrive while a batch runs form the next one (up to ``max_size``). With ``max_wait_us`` > 0
a batch that is not full waits at most that long, and only while other calls are known to be in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from outpost.v1 import outpost_pb2 as pb

from server._durability import GroupCommit
from server._pipeline import ScoringPipeline
from server._policy import ActionPolicy
from server._requests import normalise_locale, review_extra
from server._responses import build_response

__all__ = ["DeadlineExpiredError", "MicroBatcher"]


class DeadlineExpiredError(Exception):
    """The caller's deadline passed while the call waited in the queue: it was not scored."""


@dataclass(slots=True)
class _Pending:
    request: pb.ScoreRequest
    record: np.ndarray
    use_model: bool
    degraded_reason: str
    started_ns: int
    deadline_ns: int  # perf_counter_ns by which the caller stops waiting; 0 = no deadline
    future: asyncio.Future[pb.ScoreResponse]


class MicroBatcher:
    """Queue of pending Score calls drained in batches on the event loop."""

    def __init__(
        self,
        pipeline: ScoringPipeline,
        policy: Callable[[], ActionPolicy],
        commit: GroupCommit,
        *,
        max_size: int,
        max_wait_us: int,
        in_flight: Callable[[], int],
    ) -> None:
        self._pipeline = pipeline
        self._policy = policy
        self._commit = commit
        self._max_size = max_size
        self._max_wait = max_wait_us / 1e6
        self._in_flight = in_flight
        self._queue: list[_Pending] = []
        self._scheduled = False
        self._acks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.rows = 0

    async def score(
        self,
        request: pb.ScoreRequest,
        record: np.ndarray,
        *,
        use_model: bool,
        degraded_reason: str,
        time_remaining: float | None = None,
    ) -> pb.ScoreResponse:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[pb.ScoreResponse] = loop.create_future()
        now = time.perf_counter_ns()
        deadline = now + int(time_remaining * 1e9) if time_remaining is not None else 0
        self._queue.append(_Pending(request, record, use_model, degraded_reason, now, deadline, future))
        if not self._scheduled:
            self._scheduled = True
            if self._max_wait > 0 and self._in_flight() > len(self._queue):
                loop.call_later(self._max_wait, self._drain)
            else:
                loop.call_soon(self._drain)
        elif len(self._queue) >= self._max_size:
            loop.call_soon(self._drain)
        return await future

    def _drain(self) -> None:
        self._scheduled = False
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

    def _run(self, batch: list[_Pending]) -> None:
        try:
            records = np.concatenate([p.record for p in batch])
            use_model = np.fromiter((p.use_model for p in batch), dtype=bool, count=len(batch))
            ids = [p.request.transaction.transaction_id for p in batch]
            requests = [p.request for p in batch]
            decisions = self._pipeline.run(records, use_model=use_model, txn_ids=ids, extra=review_extra(requests))
            seq = self._commit.mark()
            policy = self._policy()
            responses = []
            for i, p in enumerate(batch):
                response = build_response(
                    i,
                    ids[i],
                    decisions,
                    locale=normalise_locale(p.request.locale),
                    explain=p.request.explain,
                    policy=policy,
                    degraded_reason=p.degraded_reason or decisions.degraded_reason,
                )
                responses.append(response)
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        self.batches += 1
        self.rows += len(batch)
        # Keep a reference: the loop only holds tasks weakly.
        task = asyncio.get_running_loop().create_task(self._ack(batch, responses, seq))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _ack(self, batch: list[_Pending], responses: list[pb.ScoreResponse], seq: int) -> None:
        try:
            await self._commit.wait(seq)
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        now = time.perf_counter_ns()
        for p, response in zip(batch, responses, strict=True):
            response.latency_us = (now - p.started_ns) // 1000
            if not p.future.done():
                p.future.set_result(response)
