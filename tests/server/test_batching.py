"""Micro-batching: concurrent Score calls share pipeline runs, and lone calls stop waiting for company."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from server._batcher import MicroBatcher
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


def test_lone_calls_back_off_from_waiting(server_factory: Callable[..., RunningServer]) -> None:
    """One call at a time: waits that gather nobody switch waiting off, so few of 40 calls wait at all."""
    server = server_factory(batch_wait_us=20_000, batch_busy_share=0.0)
    for i in range(40):
        server.scoring.Score(txn(f"acct-lone-{i % 3}"), timeout=30)
    stats = _batcher(server).stats
    assert stats.rows == 40 and stats.batches == 40
    assert stats.waits == stats.idle_waits  # a lone call never finds company
    assert 1 <= stats.idle_waits <= 8


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
