"""Load shedding: a bounded number of calls in flight, RESOURCE_EXHAUSTED beyond it, counted, and nothing applied."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from outpost.v1 import outpost_pb2 as pb

from tests.hardening.conftest import sample, scrape
from tests.server.conftest import RunningServer, make_settings, start_server, txn

MAX_IN_FLIGHT = 4
BURST = 400


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Batches wait 50 ms for company, so a burst piles up inside the server: a lone call synced inline on the loop
    # is answered before gRPC hands over the next one, and nothing would ever be shed.
    server = start_server(make_settings(tmp_path_factory.mktemp("shed"), max_in_flight=MAX_IN_FLIGHT,
                                        durability="fsync", metrics_addr="127.0.0.1:0", batch_wait_us=50_000,
                                        batch_busy_share=0.0, batch_idle_share=0.0))
    yield server
    server.stop()


def test_burst_beyond_max_in_flight_is_shed_at_once(small_server: RunningServer) -> None:
    """A burst far above OUTPOST_MAX_IN_FLIGHT: never more in flight, the rest RESOURCE_EXHAUSTED, metric counts it."""
    port = small_server.app.metrics_port or 0
    before = scrape(port)
    service = small_server.app.service
    highest = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal highest
        while not done.is_set():
            highest = max(highest, service.in_flight)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    accounts = [f"acct-shed-{k}" for k in range(BURST)]
    futures = [small_server.scoring.Score.future(txn(a), timeout=60) for a in accounts]
    codes = []
    for future in futures:
        try:
            future.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as err:
            codes.append(err.code())
    done.set()
    watcher.join()
    after = scrape(port)

    shed = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    accepted = codes.count(grpc.StatusCode.OK)
    assert shed + accepted == BURST, {c for c in codes}
    assert shed > 0 and accepted >= MAX_IN_FLIGHT
    assert highest <= MAX_IN_FLIGHT
    assert sample(after, "outpost_shed_total", method="Score") - sample(before, "outpost_shed_total") == shed
    ok = "outpost_calls_total"
    assert sample(after, ok, method="Score", code="OK") - sample(before, ok, method="Score", code="OK") == accepted

    for account, code in zip(accounts[::20], codes[::20], strict=True):
        probe = small_server.scoring.Score(txn(account, dry_run=True, explain=True), timeout=30)
        assert probe.features["txn_count_total"] == (1 if code == grpc.StatusCode.OK else 0), account


def test_service_answers_normally_after_the_burst(small_server: RunningServer) -> None:
    """Once the burst is over, calls within the bound are all answered."""
    for k in range(20):
        assert small_server.scoring.Score(txn(f"acct-after-{k}"), timeout=30).action == pb.ACTION_ALLOW
