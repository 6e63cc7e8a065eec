"""End-to-end Score / ScoreBatch / ReportOutcome against a real server over a real channel."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from outpost.v1 import outpost_pb2 as pb

from tests.server.conftest import BASE_TIME, RunningServer, ts, txn


def _violations(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None, "INVALID_ARGUMENT must carry a google.rpc.Status"
    out: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        out.update({v.field: v.description for v in bad.field_violations})
    return out


def _elderly() -> pb.Customer:
    return pb.Customer(customer_id="c-eld", age=74, account_opened=ts(BASE_TIME - dt.timedelta(days=3650)),
                       balance_minor=31_000_000, balance_currency="CNY", risk_level=pb.RISK_LEVEL_LOW)


def test_normal_card_payment_is_allowed(outpost_server: RunningServer) -> None:
    """An ordinary card payment at a coffee shop is allowed with a low score."""
    reply = outpost_server.scoring.Score(txn("acct-normal-1", merchant_category="5814"))
    assert reply.action == pb.ACTION_ALLOW
    assert reply.risk_score < 300
    assert reply.ruleset_version and reply.model_version
    assert not reply.degraded


def test_risky_teller_withdrawal_is_stopped_with_chinese_reasons(outpost_server: RunningServer) -> None:
    """Elderly customer withdrawing most of the balance after large inflows from new payers gets more than ALLOW."""
    account = "acct-elderly-1"
    for k in range(4):
        inflow = txn(account, amount_minor=8_000_000, at=BASE_TIME - dt.timedelta(hours=5 - k),
                     type=pb.TRANSACTION_TYPE_TRANSFER_IN, channel=pb.CHANNEL_ONLINE, counterparty=f"stranger-{k}",
                     customer=_elderly())
        outpost_server.scoring.Score(inflow)
    withdrawal = txn(account, amount_minor=30_000_000, type=pb.TRANSACTION_TYPE_CASH_WITHDRAWAL,
                     channel=pb.CHANNEL_TELLER, counterparty="", branch_id="SZ-FUTIAN-01", customer=_elderly())
    reply = outpost_server.scoring.Score(withdrawal)
    assert reply.action > pb.ACTION_ALLOW
    assert reply.reasons, "a stopped withdrawal must say why"
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in r.message) for r in reply.reasons)
    assert reply.guidance, "a teller gets guidance to read to the customer"
    contributions = [r.contribution for r in reply.reasons]
    assert contributions == sorted(contributions, reverse=True)


def test_english_locale_gives_english_reasons(outpost_server: RunningServer) -> None:
    """locale=en returns reasons without Chinese characters."""
    account = "acct-en-1"
    for k in range(6):
        outpost_server.scoring.Score(txn(account, amount_minor=900_000, type=pb.TRANSACTION_TYPE_TRANSFER_IN,
                                         channel=pb.CHANNEL_MOBILE, counterparty=f"payer-{k}",
                                         at=BASE_TIME - dt.timedelta(minutes=50 - k)))
    reply = outpost_server.scoring.Score(txn(account, amount_minor=5_300_000, type=pb.TRANSACTION_TYPE_TRANSFER_OUT,
                                             channel=pb.CHANNEL_MOBILE, counterparty="new-1", locale="en"))
    assert reply.reasons
    for reason in reply.reasons:
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in reason.message), reason.message


def test_explain_returns_the_features_the_decision_saw(outpost_server: RunningServer) -> None:
    """explain=true fills the features map, and it reflects earlier transactions of the account."""
    account = "acct-explain-1"
    outpost_server.scoring.Score(txn(account, at=BASE_TIME - dt.timedelta(minutes=30), amount_minor=10_000))
    reply = outpost_server.scoring.Score(txn(account, explain=True, amount_minor=20_000))
    assert reply.features["amount_cny"] == pytest.approx(200.0)
    assert reply.features["out_count_1h"] == 1
    assert reply.features["seconds_since_last"] == pytest.approx(1800.0)
    plain = outpost_server.scoring.Score(txn(account, amount_minor=20_000))
    assert not plain.features


def test_bad_input_is_invalid_argument_with_every_field_named(outpost_server: RunningServer) -> None:
    """Missing ids, event time, a zero amount, an unknown currency and unspecified enums are all reported."""
    bad = pb.ScoreRequest(transaction=pb.Transaction(amount_minor=0, currency="XXX"))
    with pytest.raises(grpc.RpcError) as info:
        outpost_server.scoring.Score(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = _violations(info.value)
    for name in ("transaction_id", "account_id", "event_time", "amount_minor", "currency", "type", "channel"):
        assert f"transaction.{name}" in fields, fields


def test_invalid_request_changes_no_state(outpost_server: RunningServer) -> None:
    """A rejected request leaves the account's features exactly as they were."""
    account = "acct-invalid-1"
    outpost_server.scoring.Score(txn(account, at=BASE_TIME - dt.timedelta(minutes=5)))
    bad = txn(account, currency="ZZZ")
    with pytest.raises(grpc.RpcError):
        outpost_server.scoring.Score(bad)
    reply = outpost_server.scoring.Score(txn(account, explain=True, dry_run=True))
    assert reply.features["out_count_1h"] == 1


def test_dry_run_changes_no_state(outpost_server: RunningServer) -> None:
    """dry_run scores without applying: a following call sees the same history."""
    account = "acct-dry-1"
    first = outpost_server.scoring.Score(txn(account, dry_run=True, explain=True))
    second = outpost_server.scoring.Score(txn(account, dry_run=True, explain=True))
    assert first.features["txn_count_total"] == second.features["txn_count_total"] == 0


def test_score_batch_equals_single_calls(outpost_server: RunningServer) -> None:
    """A ScoreBatch of one account's sequence gives the same scores as the same sequence sent one by one."""
    def sequence(account: str) -> list[pb.ScoreRequest]:
        reqs = []
        for k in range(5):
            reqs.append(txn(account, amount_minor=2_000_000 + k, type=pb.TRANSACTION_TYPE_TRANSFER_IN,
                            channel=pb.CHANNEL_ONLINE, counterparty=f"p{k}", at=BASE_TIME + dt.timedelta(minutes=k),
                            explain=True))
        reqs.append(txn(account, amount_minor=9_900_000, type=pb.TRANSACTION_TYPE_TRANSFER_OUT,
                        channel=pb.CHANNEL_MOBILE, counterparty="out-1", at=BASE_TIME + dt.timedelta(minutes=9),
                        explain=True))
        return reqs

    batch = outpost_server.scoring.ScoreBatch(pb.ScoreBatchRequest(requests=sequence("acct-batch-a")))
    singles = [outpost_server.scoring.Score(r) for r in sequence("acct-batch-b")]
    assert len(batch.responses) == len(singles) == 6
    for a, b in zip(batch.responses, singles, strict=True):
        assert (a.risk_score, a.action, list(a.rule_hits)) == (b.risk_score, b.action, list(b.rule_hits))
        assert dict(a.features) == dict(b.features)


def test_score_batch_rejects_whole_batch_naming_the_row(outpost_server: RunningServer) -> None:
    """One bad row rejects the batch with a field path naming that row, and nothing is applied."""
    good = txn("acct-batchbad-1")
    bad = txn("acct-batchbad-1", amount_minor=-5)
    with pytest.raises(grpc.RpcError) as info:
        outpost_server.scoring.ScoreBatch(pb.ScoreBatchRequest(requests=[good, bad]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[1].transaction.amount_minor" in _violations(info.value)
    probe = outpost_server.scoring.Score(txn("acct-batchbad-1", dry_run=True, explain=True))
    assert probe.features["txn_count_total"] == 0


def test_report_outcome_needs_a_known_transaction_or_counterparty(outpost_server: RunningServer) -> None:
    """An outcome for a scored transaction is accepted; one for an unknown transaction must name its counterparty."""
    scored = txn("acct-outcome-1", counterparty="shop-x")
    outpost_server.scoring.Score(scored)
    ok = outpost_server.scoring.ReportOutcome(pb.ReportOutcomeRequest(
        transaction_id=scored.transaction.transaction_id, outcome=pb.OUTCOME_FALSE_POSITIVE, reported_at=ts(BASE_TIME)))
    assert ok.accepted
    with pytest.raises(grpc.RpcError) as info:
        outpost_server.scoring.ReportOutcome(pb.ReportOutcomeRequest(
            transaction_id="never-seen", outcome=pb.OUTCOME_CONFIRMED_FRAUD, reported_at=ts(BASE_TIME)))
    assert "counterparty_id" in _violations(info.value)
