"""Fixtures that run a real Outpost server (in a background event loop) and real gRPC channels to it."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from outpost.v1 import outpost_pb2 as pb
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from server import OutpostApp, Settings

BASE_TIME = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)


@dataclass
class RunningServer:
    """A started OutpostApp on a loopback port, its loop thread, and a channel to it."""

    app: OutpostApp
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    channel: grpc.Channel
    stopped: bool = field(default=False)

    @property
    def port(self) -> int:
        return self.app.port

    @property
    def scoring(self) -> pb_grpc.RiskScoringStub:
        return pb_grpc.RiskScoringStub(self.channel)

    @property
    def admin(self) -> pb_grpc.RiskAdminStub:
        return pb_grpc.RiskAdminStub(self.channel)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.channel.close()
            self.call(self.app.stop(grace=2))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)


def start_server(settings: Settings) -> RunningServer:
    """Start a real server in a background loop and wait until health says SERVING."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="outpost-test-loop")
    thread.start()

    async def boot() -> OutpostApp:
        app = OutpostApp(settings)
        await app.start()
        await app.wait_ready(timeout=300)
        return app

    app = asyncio.run_coroutine_threadsafe(boot(), loop).result(timeout=300)
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    return RunningServer(app=app, loop=loop, thread=thread, channel=channel)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"addr": "127.0.0.1:0", "data_dir": tmp, "durability": "write", "grace_seconds": 2.0,
                            "model_registry": tmp / "models"}
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="session")
def outpost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the read-mostly tests of the session (each test uses its own account ids)."""
    server = start_server(make_settings(tmp_path_factory.mktemp("outpost")))
    yield server
    server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with custom settings; all are stopped at the end of the test."""
    started: list[RunningServer] = []

    def factory(**overrides: Any) -> RunningServer:
        server = start_server(make_settings(tmp_path, **overrides))
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def ts(when: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


_counter = iter(range(10**9))


def txn(
    account: str,
    *,
    amount_minor: int = 12_345,
    at: dt.datetime = BASE_TIME,
    type: int = pb.TRANSACTION_TYPE_CARD_PAYMENT,
    channel: int = pb.CHANNEL_POS,
    counterparty: str = "merchant-coffee-1",
    currency: str = "CNY",
    customer: pb.Customer | None = None,
    locale: str = "zh-CN",
    explain: bool = False,
    dry_run: bool = False,
    **fields: Any,
) -> pb.ScoreRequest:
    """A valid ScoreRequest with sensible defaults (an ordinary card payment)."""
    transaction = pb.Transaction(
        transaction_id=f"t-{next(_counter)}", event_time=ts(at), account_id=account, counterparty_id=counterparty,
        amount_minor=amount_minor, currency=currency, type=type, channel=channel, country="CN", **fields,  # type: ignore[arg-type]
    )
    default_customer = pb.Customer(
        customer_id=f"c-{account}", age=35, account_opened=ts(at - dt.timedelta(days=900)),
        balance_minor=2_000_000, balance_currency="CNY", risk_level=pb.RISK_LEVEL_LOW,
    )
    return pb.ScoreRequest(transaction=transaction, customer=customer or default_customer, locale=locale,
                           explain=explain, dry_run=dry_run)
