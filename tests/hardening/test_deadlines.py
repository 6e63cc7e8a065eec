"""Deadlines: too little time left for the model gives a rules-only degraded answer; a call past it is not processed."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import grpc
import pytest
from outpost.v1 import outpost_pb2 as pb

from tests.hardening.conftest import sample, scrape
from tests.server.conftest import BASE_TIME, RunningServer, make_settings, start_server, txn

MIN_BUDGET_MS = 5_000.0  # a call with less than 5 s left skips the model (a large budget keeps the test robust)


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(make_settings(tmp_path_factory.mktemp("deadline"), model_min_budget_ms=MIN_BUDGET_MS,
                                        metrics_addr="127.0.0.1:0"))
    yield server
    server.stop()


def _risky(account: str, **kw: object) -> pb.ScoreRequest:
    """A large outflow by a high-risk customer: a rule hits on this transaction alone."""
    customer = pb.Customer(customer_id="c-risky", age=45, risk_level=pb.RISK_LEVEL_HIGH, balance_minor=90_000_000,
                           balance_currency="CNY")
    return txn(account, amount_minor=15_000_000, type=pb.TRANSACTION_TYPE_TRANSFER_OUT, channel=pb.CHANNEL_MOBILE,
               counterparty="payee-new", customer=customer, **kw)  # type: ignore[arg-type]


def test_short_deadline_gets_a_rules_only_degraded_answer(budget_server: RunningServer) -> None:
    """With less time left than OUTPOST_MODEL_MIN_BUDGET_MS the model is skipped, rules still decide."""
    short = budget_server.scoring.Score(_risky("acct-dl-1", dry_run=True), timeout=MIN_BUDGET_MS / 1000 / 2)
    assert short.degraded and short.degraded_reason == "deadline"
    assert short.model_probability == 0 and short.model_version == ""
    assert short.rule_hits, "rules still run on a degraded answer"
    assert all(r.source == pb.RULE for r in short.reasons)


def test_generous_deadline_is_not_degraded(budget_server: RunningServer) -> None:
    """A call with plenty of time (or none set) gets rules and model."""
    for timeout in (MIN_BUDGET_MS / 1000 * 4, None):
        full = budget_server.scoring.Score(_risky("acct-dl-2", dry_run=True), timeout=timeout)
        assert not full.degraded and full.degraded_reason == ""
        assert full.model_probability > 0 and full.model_version
        assert full.rule_hits


def test_short_deadline_batch_is_degraded_row_by_row(budget_server: RunningServer) -> None:
    """ScoreBatch with a short deadline answers every row rules-only with degraded set."""
    batch = pb.ScoreBatchRequest(requests=[_risky(f"acct-dl-b{k}", dry_run=True) for k in range(3)])
    reply = budget_server.scoring.ScoreBatch(batch, timeout=MIN_BUDGET_MS / 1000 / 2)
    assert [r.degraded_reason for r in reply.responses] == ["deadline"] * 3
    assert all(r.model_probability == 0 for r in reply.responses)


def test_call_already_past_its_deadline_is_not_processed(budget_server: RunningServer) -> None:
    """A call whose deadline passes before the server gets to it fails and leaves the account's state untouched."""
    account = "acct-dl-late"
    before = scrape(budget_server.app.metrics_port or 0)
    budget_server.loop.call_soon_threadsafe(time.sleep, 1.0)  # the server is busy for a second
    with pytest.raises(grpc.RpcError) as info:
        budget_server.scoring.Score(txn(account, at=BASE_TIME), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(1.0)  # the loop is free again and has seen the late call
    probe = budget_server.scoring.Score(txn(account, at=BASE_TIME + dt.timedelta(minutes=1), dry_run=True,
                                            explain=True))
    assert probe.features["txn_count_total"] == 0
    after = scrape(budget_server.app.metrics_port or 0)
    ok = "outpost_calls_total"
    assert sample(after, ok, method="Score", code="OK") - sample(before, ok, method="Score", code="OK") == 1  # probe
