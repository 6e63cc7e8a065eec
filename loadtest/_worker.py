"""One client process: one grpc.aio channel and one event loop, sending pre-built payloads open or closed loop.

Open loop: call ``i`` of this process is due at ``t0 + phase + i / rate``; its latency runs from that
intended time, not from when the loop actually got round to sending it, so a server stall (or a
client that falls behind) shows up in the tail instead of silently lowering the offered load.
Closed loop: ``concurrency`` lanes each send the next call as soon as the previous one answers.
Every call is recorded; the parent process picks the measured window and merges the histograms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import grpc
import numpy as np
from hdrh.histogram import HdrHistogram
from outpost.v1 import outpost_pb2 as pb

__all__ = [
    "HIGHEST_US",
    "NOT_SENT",
    "SIGNIFICANT_FIGURES",
    "WorkerResult",
    "WorkerSpec",
    "new_histogram",
    "worker_main",
]

NOT_SENT = -1  # status of a call the client dropped because too many were already in flight
HIGHEST_US = 600_000_000  # histograms track 1 µs .. 10 min
SIGNIFICANT_FIGURES = 3
_YIELD_EVERY = 64  # when behind schedule, let responses in at least this often


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds, the same layout in every process."""
    return HdrHistogram(1, HIGHEST_US, SIGNIFICANT_FIGURES)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    """What one client process does (pickled to it)."""

    index: int
    target: str
    method: str
    rate: float | None  # this process's share of the offered rate, calls/s (open loop)
    phase_s: float  # offset of this process's first intended send (open loop)
    concurrency: int  # this process's calls in flight (closed loop)
    warmup_s: float
    duration_s: float
    deadline_s: float
    max_in_flight: int
    connect_timeout_s: float
    cycle_payloads: bool
    payloads: list[bytes]


@dataclass(slots=True, kw_only=True)
class WorkerResult:
    """Every call of one process, times in seconds from the common start ``t0``, and its window histograms."""

    index: int
    intended_s: np.ndarray  # float64: intended send (open loop) or actual send (closed loop)
    sent_s: np.ndarray  # float64: actual send; NaN when not sent
    done_s: np.ndarray  # float64: answer or error received; NaN when not sent
    status: np.ndarray  # int16: grpc status code number, 0 = OK, NOT_SENT
    actions: dict[int, int] = field(default_factory=dict)  # Action number -> transactions, measured window
    degraded: int = 0
    latency_hdr: bytes = b""  # encoded histogram of window latencies (from intended send), µs
    service_hdr: bytes = b""  # encoded histogram of window service times (from actual send), µs
    payloads_exhausted: bool = False
    error: str = ""


class _Client:
    def __init__(self, spec: WorkerSpec, channel: grpc.aio.Channel) -> None:
        self.spec = spec
        deserializer = pb.ScoreResponse.FromString if spec.method == "Score" else pb.ScoreBatchResponse.FromString
        # No request serializer: payloads are already serialized bytes.
        self.stub = channel.unary_unary(f"/outpost.v1.RiskScoring/{spec.method}", response_deserializer=deserializer)
        self.window = (spec.warmup_s, spec.warmup_s + spec.duration_s)
        self.t0 = 0.0
        self.intended: list[float] = []
        self.sent: list[float] = []
        self.done: list[float] = []
        self.status: list[int] = []
        self.actions: dict[int, int] = {}
        self.degraded = 0
        self.next_payload = 0
        self.exhausted = False

    def _count(self, reply: pb.ScoreResponse | pb.ScoreBatchResponse) -> None:
        replies = [reply] if isinstance(reply, pb.ScoreResponse) else reply.responses
        for one in replies:
            self.actions[one.action] = self.actions.get(one.action, 0) + 1
            if one.degraded:
                self.degraded += 1

    async def call(self, payload: bytes, intended: float) -> None:
        sent = time.monotonic()
        try:
            reply = await self.stub(payload, timeout=self.spec.deadline_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().value[0]
            reply = None
        else:
            code = 0
        done = time.monotonic()
        offset = intended - self.t0
        self.intended.append(offset)
        self.sent.append(sent - self.t0)
        self.done.append(done - self.t0)
        self.status.append(code)
        if reply is not None and self.window[0] <= offset < self.window[1]:
            self._count(reply)

    def payload(self) -> bytes | None:
        if self.next_payload >= len(self.spec.payloads):
            if not self.spec.cycle_payloads or not self.spec.payloads:
                self.exhausted = True
                return None
            self.next_payload = 0
        self.next_payload += 1
        return self.spec.payloads[self.next_payload - 1]

    async def open_loop(self) -> None:
        assert self.spec.rate is not None
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.spec.rate
        end = self.t0 + self.window[1]
        pending: set[asyncio.Task[None]] = set()
        behind = 0
        i = 0
        while True:
            intended = self.t0 + self.spec.phase_s + i * interval
            if intended >= end:
                break
            i += 1
            delay = intended - time.monotonic()
            if delay > 0:
                behind = 0
                await asyncio.sleep(delay)
            else:
                behind += 1
                if behind % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            payload = self.payload() if len(pending) < self.spec.max_in_flight else None
            if payload is None:
                self.intended.append(intended - self.t0)
                self.sent.append(float("nan"))
                self.done.append(float("nan"))
                self.status.append(NOT_SENT)
                continue
            task = loop.create_task(self.call(payload, intended))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)

    async def closed_loop(self) -> None:
        end = self.t0 + self.window[1]

        async def lane() -> None:
            while (now := time.monotonic()) < end:
                payload = self.payload()
                if payload is None:
                    return
                await self.call(payload, now)

        await asyncio.gather(*(lane() for _ in range(self.spec.concurrency)))

    def result(self) -> WorkerResult:
        intended = np.asarray(self.intended, dtype=np.float64)
        sent = np.asarray(self.sent, dtype=np.float64)
        done = np.asarray(self.done, dtype=np.float64)
        status = np.asarray(self.status, dtype=np.int16)
        order = np.argsort(intended, kind="stable")
        intended, sent, done, status = intended[order], sent[order], done[order], status[order]
        in_window = (intended >= self.window[0]) & (intended < self.window[1]) & (status != NOT_SENT)
        latency, service = new_histogram(), new_histogram()
        for value in np.clip((done[in_window] - intended[in_window]) * 1e6, 1, HIGHEST_US).astype(np.int64).tolist():
            latency.record_value(value)
        for value in np.clip((done[in_window] - sent[in_window]) * 1e6, 1, HIGHEST_US).astype(np.int64).tolist():
            service.record_value(value)
        return WorkerResult(
            index=self.spec.index,
            intended_s=intended,
            sent_s=sent,
            done_s=done,
            status=status,
            actions=self.actions,
            degraded=self.degraded,
            latency_hdr=latency.encode(),
            service_hdr=service.encode(),
            payloads_exhausted=self.exhausted,
        )


async def _run(spec: WorkerSpec, conn: Connection) -> WorkerResult:
    options = [("grpc.enable_retries", 0), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(spec.target, options=options) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout=spec.connect_timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no connection to {spec.target} within {spec.connect_timeout_s:g} s") from None
        client = _Client(spec, channel)
        conn.send(("ready", spec.index))
        start_wall: float = conn.recv()
        # The parent's start is a wall-clock instant; every process turns it into its own monotonic time.
        client.t0 = time.monotonic() + (start_wall - time.time())
        delay = client.t0 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if spec.rate is not None:
            await client.open_loop()
        else:
            await client.closed_loop()
        return client.result()


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of a client process: report ready, wait for the common start, run, send back the result."""
    try:
        result = asyncio.run(_run(spec, conn))
    except Exception as exc:  # reported to the parent, which raises it with context
        empty = np.zeros(0)
        result = WorkerResult(
            index=spec.index, intended_s=empty, sent_s=empty, done_s=empty, status=np.zeros(0, dtype=np.int16),
            error=f"{type(exc).__name__}: {exc}",
        )
    with contextlib.suppress(OSError):  # the parent gave up on us already
        conn.send(("result", result))
    conn.close()
