"""Micro-batching: concurrent Score calls share pipeline runs, and lone calls stop waiting for company."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from outpost.v1 import outpost_pb2 as pb

from server._batcher import _QUICK_MIN_NS, MicroBatcher
from tests.server.conftest import RunningServer, txn


def _batcher(server: RunningServer) -> MicroBatcher:
    batcher = server.app.service.batcher
    assert batcher is not None
    return batcher


def test_concurrent_calls_are_scored_together(server_factory: Callable[..., RunningServer]) -> None:
    """Sixteen calls sent at once are answered individually from fewer pipeline runs than calls."""
    server = server_factory(batch_wait_us=50_000, batch_busy_share=0.0, batch_idle_share=0.0)
    requests = [txn(f"acct-batch-{i}") for i in range(16)]
    futures = [server.scoring.Score.future(r, timeout=30) for r in requests]
    replies = [f.result() for f in futures]
    assert [r.transaction_id for r in replies] == [r.transaction.transaction_id for r in requests]
    stats = _batcher(server).stats
    assert stats.rows == 16
    assert stats.batches < 16


def test_a_wait_ends_once_the_loop_idles(server_factory: Callable[..., RunningServer]) -> None:
    """With a 2 s longest wait, calls are answered long before it: the wait ends when no more calls come in."""
    server = server_factory(batch_wait_us=2_000_000, batch_busy_share=0.0, batch_idle_share=0.5)
    futures = [server.scoring.Score.future(txn(f"acct-early-{i}"), timeout=30) for i in range(4)]
    replies = [f.result() for f in futures]
    stats = _batcher(server).stats
    assert stats.rows == 4 and stats.waits >= 1
    assert stats.early_ends >= 1
    assert max(r.latency_us for r in replies) < 1_000_000  # server-side time: the full wait would be 2 s


def test_callers_all_in_end_the_wait_without_the_idle_check(server_factory: Callable[..., RunningServer]) -> None:
    """Four callers in lockstep: once two waits gathered all four, a wait holding four ends at once, not after the
    longest wait (no idle check here)."""
    server = server_factory(batch_wait_us=1_000_000, batch_busy_share=0.0, batch_idle_share=0.0)
    slowest: list[int] = []
    for i in range(8):
        four = [server.scoring.Score.future(txn(f"acct-four-{i}-{k}"), timeout=30) for k in range(4)]
        slowest.append(max(f.result().latency_us for f in four))
    stats = _batcher(server).stats
    assert stats.rows == 32 and stats.waits == stats.batches == 8
    assert min(slowest[:2]) >= 900_000  # the first two waits learn how many come: they run their full length
    assert stats.all_in == 6
    assert max(slowest[2:]) < 500_000
    # Nobody ever joined a quick check: six of them shortened it to its least (200 µs x 0.75^6 < 40 µs).
    assert _batcher(server)._quick_ns == _QUICK_MIN_NS


def test_lone_calls_back_off_from_waiting(server_factory: Callable[..., RunningServer]) -> None:
    """One call at a time: waits that gather nobody switch waiting off, so few of 40 calls wait at all."""
    server = server_factory(batch_wait_us=20_000, batch_busy_share=0.0)
    for i in range(40):
        server.scoring.Score(txn(f"acct-lone-{i % 3}"), timeout=30)
    stats = _batcher(server).stats
    assert stats.rows == 40 and stats.batches == 40
    assert stats.waits == stats.idle_waits  # a lone call never finds company
    assert 1 <= stats.idle_waits <= 8


def test_callers_in_lockstep_back_off_from_waiting(server_factory: Callable[..., RunningServer]) -> None:
    """Two callers sending together, each after its reply: waits that gather only those two are not worth their
    wait, so waiting switches off and few of 30 rounds wait at all."""
    server = server_factory(batch_wait_us=20_000, batch_busy_share=0.0, batch_idle_share=0.0)
    for i in range(30):
        pair = [server.scoring.Score.future(txn(f"acct-pair-{i}-{k}"), timeout=30) for k in range(2)]
        assert all(f.result().transaction_id for f in pair)
    stats = _batcher(server).stats
    assert stats.rows == 60
    assert stats.waits == stats.idle_waits  # no wait gathered enough company to pay
    assert 1 <= stats.waits <= 12


def test_an_idle_loop_never_waits_for_company(server_factory: Callable[..., RunningServer]) -> None:
    """Below the busy share (the loop mostly idle between sequential calls), no batch waits at all."""
    server = server_factory(batch_wait_us=50_000, batch_busy_share=0.95)
    for i in range(30):
        server.scoring.Score(txn(f"acct-idle-{i % 3}"), timeout=30)
    stats = _batcher(server).stats
    assert stats.batches == 30
    assert stats.waits == 0
    assert stats.alone == 30  # each scored in its own task, without a queue or a loop round trip


def test_a_lone_call_that_fails_is_answered_internal_and_the_next_is_scored(
    server_factory: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline failure in a call scored alone reaches its caller as INTERNAL; the batcher keeps working."""
    server = server_factory()
    pipeline = server.app.service.pipeline
    assert pipeline is not None
    real_run = pipeline.run
    failed: list[bool] = []

    def fail_once(*args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(True)
            raise RuntimeError("injected pipeline failure")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run", fail_once)
    with pytest.raises(grpc.RpcError) as err:
        server.scoring.Score(txn("acct-alone-fail"), timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    reply = server.scoring.Score(txn("acct-alone-next"), timeout=30)
    assert reply.transaction_id and failed == [True]
    stats = _batcher(server).stats
    assert stats.alone == 1 and stats.batches == 1  # the failed call counts as no batch


class _SeenBySinks:
    """A decision sink that notes each transaction id it receives and how many calls the server held then."""

    def __init__(self, server: RunningServer) -> None:
        self._gateway = server.app.gateway
        self.ids: list[str] = []
        self.in_flight: list[int] = []

    def record(self, txn_ids: Sequence[str], txns: object, decisions: object) -> None:
        self.ids.extend(txn_ids)
        self.in_flight.append(self._gateway.in_flight)


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_sinks_get_every_call_once_after_its_reply(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """Lone calls, a micro-batch and a ScoreBatch all reach the decision sinks, each call once. A lone call's
    decisions reach them only after its handler has returned (no call in flight then): its reply waits on none."""
    alone = server_factory(batch_wait_us=0)  # no waiting for company: each call scored alone, in its own task
    seen = _SeenBySinks(alone)
    assert alone.app.service.pipeline is not None
    alone.app.service.pipeline.add_sink(seen)
    lone = [txn(f"acct-sink-lone-{i}") for i in range(5)]
    for request in lone:
        alone.scoring.Score(request, timeout=30)
    _wait_for(lambda: len(seen.ids) == len(lone))
    assert seen.ids == [r.transaction.transaction_id for r in lone]
    assert seen.in_flight == [0] * len(lone)
    assert _batcher(alone).stats.alone == len(lone)

    batching = server_factory(data_dir=tmp_path / "batching", batch_wait_us=50_000, batch_busy_share=0.0,
                              batch_idle_share=0.0)
    seen = _SeenBySinks(batching)
    assert batching.app.service.pipeline is not None
    batching.app.service.pipeline.add_sink(seen)
    together = [txn(f"acct-sink-batch-{i}") for i in range(8)]
    for future in [batching.scoring.Score.future(r, timeout=30) for r in together]:
        future.result()
    in_one_call = [txn(f"acct-sink-scorebatch-{i}") for i in range(40)]
    batching.scoring.ScoreBatch(pb.ScoreBatchRequest(requests=in_one_call), timeout=30)
    expected = [r.transaction.transaction_id for r in together + in_one_call]
    _wait_for(lambda: len(seen.ids) >= len(expected))
    assert sorted(seen.ids) == sorted(expected)
    assert _batcher(batching).stats.batches < len(together)


def test_a_committed_call_whose_reply_fails_still_reaches_the_sinks(
    server_factory: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state took the call before its reply failed to build: the caller gets INTERNAL, the sinks the call."""
    import server._batcher as batcher_module

    server = server_factory(batch_wait_us=0)
    seen = _SeenBySinks(server)
    assert server.app.service.pipeline is not None
    server.app.service.pipeline.add_sink(seen)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected reply failure")

    monkeypatch.setattr(batcher_module, "build_responses", broken)
    request = txn("acct-sink-broken-reply")
    with pytest.raises(grpc.RpcError) as err:
        server.scoring.Score(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    _wait_for(lambda: bool(seen.ids))
    assert seen.ids == [request.transaction.transaction_id]


def test_invalid_calls_queued_with_valid_ones_are_refused_alone(server_factory: Callable[..., RunningServer]) -> None:
    """Calls queued together are validated together: each invalid one gets INVALID_ARGUMENT naming its fields and
    changes no state, and every valid one (the compiled decoder's and the Python path's alike) is scored."""
    server = server_factory(batch_wait_us=50_000, batch_busy_share=0.0, batch_idle_share=0.0)
    requests = [txn(f"acct-mixed-{i}") for i in range(12)]
    requests[3] = txn("acct-mixed-bad-currency", currency="ZZZ")
    requests[7] = txn("acct-mixed-bad-amount", amount_minor=-5)
    requests[9] = txn("账户-深圳-混合", counterparty="商户-咖啡")  # valid, with UTF-8 identifiers
    bad = {3: "transaction.currency", 7: "transaction.amount_minor"}
    futures = [server.scoring.Score.future(r, timeout=30) for r in requests]
    for i, future in enumerate(futures):
        if i in bad:
            with pytest.raises(grpc.RpcError) as info:
                future.result()
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad[i] in (info.value.details() or "")
        else:
            assert future.result().transaction_id == requests[i].transaction.transaction_id
    stats = _batcher(server).stats
    assert stats.rows == len(requests) - len(bad)
    assert stats.batches < stats.rows  # the calls shared pipeline runs
    status = server.admin.GetStatus(pb.GetStatusRequest())
    assert status.accounts == len(requests) - len(bad)  # the refused calls' accounts were never created
