"""The whole review loop against a real Outpost server: score a simulated stream, alerts appear, outcomes are
reported over gRPC, counterparty features change only after the label's reported_at, a draft rule file is
backtested, and both reports render."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from outpost.v1 import outpost_pb2 as pb

from review import (
    AlertStore,
    OutcomeReport,
    ReviewSinks,
    account_key,
    alerts_db_path,
    cli,
    decision_log_dir,
    read_decisions,
    send_outcome,
)
from tests.server.conftest import RunningServer, make_settings, start_server, ts

from .conftest import RULES_YAML, request_from_row
from .test_backtest import DRAFT_YAML
from .test_reports import images


@pytest.fixture(scope="module")
def loop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, ReviewSinks]]:
    """A real server with the test rules, and the review sinks it wired into its pipeline."""
    directory = tmp_path_factory.mktemp("loop")
    rules = directory / "rules.yaml"
    rules.write_text(RULES_YAML, encoding="utf-8")
    server = start_server(make_settings(directory, rules_path=rules))
    sinks = server.app.service.review
    assert sinks is not None, "the server opens the review sinks when it loads"
    yield server, sinks
    server.stop()


def _settle(server: RunningServer, sinks: ReviewSinks) -> bool:
    """Flush the sinks once they hold every call answered so far: the server hands a batch to them in a loop callback
    after its reply, so a step on the server's loop (FIFO) comes after the callbacks of every reply received."""
    server.call(asyncio.sleep(0))
    return sinks.flush()


def _payment(txn_id: str, account: str, at: dt.datetime) -> pb.ScoreRequest:
    transaction = pb.Transaction(
        transaction_id=txn_id, event_time=ts(at), account_id=account, counterparty_id="loop-scam-payee",
        amount_minor=300_000, currency="CNY", type=pb.TRANSACTION_TYPE_TRANSFER_OUT, channel=pb.CHANNEL_MOBILE,
        country="CN",
    )
    return pb.ScoreRequest(transaction=transaction, locale="en", explain=True,
                           customer=pb.Customer(customer_id=f"c-{account}", age=40))


@pytest.mark.slow
def test_the_review_loop(loop_server: tuple[RunningServer, ReviewSinks], bank: pd.DataFrame, bank_csv: Path,
                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Stream -> decision log and alerts -> outcomes -> delayed counterparty feature -> backtest -> reports."""
    server, sinks = loop_server
    settings = server.app.service.settings
    scoring = server.scoring

    # 1. Score the simulated stream in event-time order (ScoreBatch, as a gateway replaying its traffic would).
    replies: list[pb.ScoreResponse] = []
    for start in range(0, len(bank), 500):
        rows = bank.iloc[start:start + 500]
        batch = pb.ScoreBatchRequest(requests=[request_from_row(row) for _, row in rows.iterrows()])
        replies.extend(scoring.ScoreBatch(batch, timeout=120).responses)
    assert len(replies) == len(bank)
    alerted = [r.transaction_id for r in replies if r.action >= pb.ACTION_REVIEW]
    assert alerted

    # 2. Every score is in the decision log, and every alerting one is an open alert.
    assert _settle(server, sinks)
    logged = read_decisions(decision_log_dir(settings))
    assert set(bank["transaction_id"]) <= set(logged["transaction_id"])
    with AlertStore.open(alerts_db_path(settings)) as store:
        alerts = store.list_alerts(limit=None)
    assert {a.transaction_id for a in alerts} == set(alerted)
    sample = next(a for a in alerts if a.transaction_id == alerted[0])
    row = bank.loc[bank["transaction_id"] == sample.transaction_id].iloc[0]
    assert sample.state == "open" and sample.reasons
    assert sample.account_key == account_key(row["account_id"])
    assert sample.account_id == row["account_id"]  # the server passes the raw account ids to the sinks

    # 3. A confirmed fraud on a payee, reported over gRPC with a business time, counts only from that time on.
    t0 = pd.to_datetime(bank["event_time"], utc=True).max().to_pydatetime() + dt.timedelta(days=2)
    first = scoring.Score(_payment("loop-1", "loop-victim", t0))
    assert first.features["counterparty_fraud_reports"] == 0
    reported_at = t0 + dt.timedelta(days=1)
    send_outcome(f"127.0.0.1:{server.port}", OutcomeReport(
        transaction_id="loop-1", outcome="confirmed_fraud", reported_at=reported_at, analyst="hotline"))
    before = scoring.Score(_payment("loop-2", "loop-b", reported_at - dt.timedelta(hours=1)))
    after = scoring.Score(_payment("loop-3", "loop-c", reported_at + dt.timedelta(hours=1)))
    assert before.features["counterparty_fraud_reports"] == 0 and "PAYEE_REPORTED" not in before.rule_hits
    assert after.features["counterparty_fraud_reports"] == 1 and "PAYEE_REPORTED" in after.rule_hits
    assert after.action >= pb.ACTION_CHALLENGE

    # 4. The alert of loop-3 is closed from the CLI, which reports the outcome to the server.
    assert _settle(server, sinks)
    with AlertStore.open(alerts_db_path(settings)) as store:
        alert = store.find("loop-3")
        assert alert is not None and alert.state == "open" and "PAYEE_REPORTED" in alert.rule_hits
        assert store.find("loop-2") is None
        labels = store.outcomes()
    assert labels.loc[labels["transaction_id"] == "loop-1", "outcome"].tolist() == ["confirmed_fraud"]
    second_report = reported_at + dt.timedelta(days=1)
    code = cli.main(["alerts", "--db", str(alerts_db_path(settings)), "close", str(alert.alert_id),
                     "--outcome", "confirmed_fraud", "--by", "analyst-li", "--reported-at", second_report.isoformat(),
                     "--server", f"127.0.0.1:{server.port}"])
    assert code == 0, capsys.readouterr().err
    later = scoring.Score(_payment("loop-4", "loop-d", second_report + dt.timedelta(minutes=5)))
    assert later.features["counterparty_fraud_reports"] == 2
    assert _settle(server, sinks)
    with AlertStore.open(alerts_db_path(settings)) as store:
        closed = store.find("loop-3")
        assert closed is not None and (closed.state, closed.outcome) == ("closed", "confirmed_fraud")
        assert store.outcomes()["transaction_id"].tolist().count("loop-3") == 1  # CLI + server echo: one label

    # 5. A draft rule file, backtested on the simulated history, reports its precision and recall.
    live_rules, draft_rules = tmp_path / "live.yaml", tmp_path / "draft.yaml"
    live_rules.write_text(RULES_YAML, encoding="utf-8")
    draft_rules.write_text(DRAFT_YAML, encoding="utf-8")
    scores, report_json = tmp_path / "scores.csv", tmp_path / "report.json"
    assert cli.main(["backtest", "--data", str(bank_csv), "--rules", str(live_rules), "--compare-rules",
                     str(draft_rules), "--out", str(scores), "--report-json", str(report_json)]) == 0
    report = json.loads(report_json.read_text(encoding="utf-8"))
    new_rule = next(r for r in report["draft"]["rules"] if r["id"] == "NEW_NIGHT_LARGE")
    assert new_rule["hits"] > 0 and new_rule["precision"] is not None and new_rule["recall"] is not None
    assert report["draft"]["hybrid"]["recall"] is not None

    # 6. Both reports render with their charts.
    assert cli.main(["report", "backtest", "--scores", str(scores), "--report-json", str(report_json),
                     "--out", str(tmp_path / "backtest.html")]) == 0
    page = (tmp_path / "backtest.html").read_text(encoding="utf-8")
    charts = images(page)
    assert {"Risk score and alert rate over time", "Precision-recall of the hybrid score",
            "Rules whose hits change in the draft"} <= set(charts)
    account = row["account_id"]
    assert cli.main(["investigate", str(account), "--data", str(bank_csv), "--decisions",
                     str(decision_log_dir(settings)), "--alerts-db", str(alerts_db_path(settings)),
                     "--out", str(tmp_path / "account.html")]) == 0
    account_page = (tmp_path / "account.html").read_text(encoding="utf-8")
    charts = images(account_page)
    assert "Risk score of each transaction" in charts and "Transaction timeline" in charts
    assert any(t.startswith("Counterparties of the account") for t in charts)
    assert sample.transaction_id in account_page
