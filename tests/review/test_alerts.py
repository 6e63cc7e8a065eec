"""The alert queue: which decisions raise alerts, their content, the state machine and outcomes."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from outpost.v1 import outpost_pb2 as pb

from features import FEATURE_NAMES, stable_key
from review import (
    AlertConfig,
    AlertError,
    AlertNotFoundError,
    AlertSink,
    AlertStateError,
    AlertStore,
    outcome_name,
)
from rules_engine import RuleSet
from server import ScoringPipeline

from .conftest import T0_US, make_batch


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "alerts.sqlite3"


def _raise_alerts(pipeline: ScoringPipeline, db: Path, amounts: list[float], *, apply: int = 1,
                  config: AlertConfig | None = None) -> list[str]:
    sink = AlertSink(db, config)
    accounts = [f"acct-{i}" for i in range(len(amounts))]
    batch = make_batch(amounts, accounts=accounts, apply=apply)
    ids = [f"tx-{i}" for i in range(len(amounts))]
    decisions = pipeline.run(batch)
    # What the server adds for analysts: the raw ids behind the keys (decisions.extra, row-aligned).
    decisions.extra["account_ids"] = accounts
    sink.record(ids, batch, decisions, counterparty_ids=["payee-1"] * len(amounts))
    sink.close()
    return ids


def test_only_alerting_actions_become_alerts(pipeline: ScoringPipeline, db: Path) -> None:
    """REVIEW and above raise an alert (once per transaction); ALLOW rows do not."""
    _raise_alerts(pipeline, db, [80_000.0, 50.0, 120_000.0, 10.0])
    with AlertStore.open(db) as store:
        alerts = store.list_alerts(order="oldest")
        assert [a.transaction_id for a in alerts] == ["tx-0", "tx-2"]
        assert {a.state for a in alerts} == {"open"}
        assert store.counts() == {"open": 2, "under_review": 0, "escalated": 0, "closed": 0}


def test_dry_runs_never_alert(pipeline: ScoringPipeline, db: Path) -> None:
    """A what-if score (apply=0) that would alert raises nothing."""
    _raise_alerts(pipeline, db, [80_000.0], apply=0)
    with AlertStore.open(db) as store:
        assert store.list_alerts() == []


def test_min_action_raises_the_bar(pipeline: ScoringPipeline, db: Path) -> None:
    """With min_action=BLOCK a REVIEW decision raises no alert."""
    _raise_alerts(pipeline, db, [80_000.0], config=AlertConfig(min_action="BLOCK"))
    with AlertStore.open(db) as store:
        assert store.list_alerts() == []


def test_an_alert_holds_what_the_analyst_needs(pipeline: ScoringPipeline, db: Path) -> None:
    """Raw ids, keys, amount, action, rule hits, ranked reasons in both languages and the features seen."""
    _raise_alerts(pipeline, db, [80_000.0])
    with AlertStore.open(db) as store:
        alert = store.list_alerts()[0]
    assert alert.account_id == "acct-0" and alert.account_key == f"{stable_key('acct-0'):016x}"
    assert alert.counterparty_id == "payee-1" and alert.counterparty_key == f"{stable_key('payee-1'):016x}"
    assert alert.amount_minor == 8_000_000 and alert.amount_cny == 80_000.0
    assert (alert.action, alert.risk, alert.txn_type, alert.channel) == ("REVIEW", 500, "TRANSFER_OUT", "MOBILE")
    assert alert.rule_hits == ("BIG_AMOUNT",) and alert.model_probability is None
    assert alert.event_time == dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=T0_US)
    reason = alert.reasons[0]
    assert (reason.code, reason.source, reason.points) == ("BIG_AMOUNT", "rule", 500.0)
    assert reason.message_zh == "转出金额80,000元" and reason.message_en == "outflow of 80,000 CNY"
    assert alert.features["amount_cny"] == 80_000.0 and alert.features["is_outflow"] == 1.0


def test_state_machine_assign_escalate_close(pipeline: ScoringPipeline, db: Path) -> None:
    """open -> under_review -> escalated -> closed, each change in the history with its actor."""
    _raise_alerts(pipeline, db, [80_000.0])
    with AlertStore.open(db) as store:
        alert_id = store.list_alerts()[0].alert_id
        assert store.assign(alert_id, "wang").state == "under_review"
        assert store.escalate(alert_id, actor="wang", note="needs compliance").state == "escalated"
        assert store.assign(alert_id, "li", actor="chen").state == "escalated"
        closed = store.close(alert_id, "confirmed_fraud", actor="li", note="customer confirmed the scam")
        assert (closed.state, closed.outcome, closed.assignee) == ("closed", "confirmed_fraud", "li")
        assert closed.closed_at is not None
        history = store.history(alert_id)
        assert [(e.change, e.from_state, e.to_state, e.actor) for e in history] == [
            ("assign", "open", "under_review", "wang"),
            ("escalate", "under_review", "escalated", "wang"),
            ("assign", "escalated", "escalated", "chen"),
            ("close", "escalated", "closed", "li"),
        ]
        labels = store.outcomes()
        assert labels[["transaction_id", "outcome", "analyst"]].values.tolist() == [["tx-0", "confirmed_fraud", "li"]]


def test_closed_alerts_refuse_changes(pipeline: ScoringPipeline, db: Path) -> None:
    """A closed alert cannot be reassigned, escalated or closed again; the error names the state."""
    _raise_alerts(pipeline, db, [80_000.0])
    with AlertStore.open(db) as store:
        alert_id = store.list_alerts()[0].alert_id
        store.close(alert_id, "false_positive", actor="wang")
        changes: list[Callable[[], object]] = [
            lambda: store.assign(alert_id, "li"), lambda: store.escalate(alert_id, actor="li"),
            lambda: store.close(alert_id, "confirmed_fraud", actor="li"),
        ]
        for change in changes:
            with pytest.raises(AlertStateError, match="closed") as info:
                change()
            assert info.value.state == "closed"
        assert store.get(alert_id).outcome == "false_positive"


def test_escalating_twice_is_refused(pipeline: ScoringPipeline, db: Path) -> None:
    """Only open or under-review alerts can be escalated."""
    _raise_alerts(pipeline, db, [80_000.0])
    with AlertStore.open(db) as store:
        alert_id = store.list_alerts()[0].alert_id
        store.escalate(alert_id, actor="wang")
        with pytest.raises(AlertStateError, match="only open or under_review"):
            store.escalate(alert_id, actor="wang")


def test_unknown_alerts_outcomes_and_states_are_named(pipeline: ScoringPipeline, db: Path) -> None:
    """Errors say which id, outcome or state was wrong and what is valid."""
    _raise_alerts(pipeline, db, [80_000.0])
    with AlertStore.open(db) as store:
        with pytest.raises(AlertNotFoundError, match="no alert 999"):
            store.get(999)
        with pytest.raises(AlertError, match="confirmed_fraud"):
            store.close(store.list_alerts()[0].alert_id, "maybe", actor="x")
        with pytest.raises(AlertError, match="under_review"):
            store.list_alerts(state="pending")
    assert outcome_name(pb.OUTCOME_CUSTOMER_DISSUADED) == "customer_dissuaded"
    assert outcome_name("OUTCOME_FALSE_POSITIVE") == "false_positive"


def test_filters(pipeline: ScoringPipeline, db: Path) -> None:
    """State, assignee, account (id or key), action and risk filters select the right alerts."""
    _raise_alerts(pipeline, db, [80_000.0, 90_000.0, 100_000.0])
    with AlertStore.open(db) as store:
        first, second, third = store.list_alerts(order="oldest")
        store.assign(second.alert_id, "wang")
        store.close(third.alert_id, "legitimate", actor="li")
        assert [a.alert_id for a in store.list_alerts(state="open")] == [first.alert_id]
        assert [a.alert_id for a in store.list_alerts(assignee="wang")] == [second.alert_id]
        assert [a.alert_id for a in store.list_alerts(account="acct-1")] == [second.alert_id]
        assert [a.alert_id for a in store.list_alerts(account=second.account_key)] == [second.alert_id]
        assert len(store.list_alerts(action="review", min_risk=500)) == 3
        assert store.list_alerts(min_risk=501) == []
        assert [a.alert_id for a in store.list_alerts(state=["open", "closed"], order="oldest")] == [
            first.alert_id, third.alert_id]


def _outcome_request(txn_id: str, outcome: int, when: dt.datetime) -> pb.ReportOutcomeRequest:
    stamp = Timestamp()
    stamp.FromDatetime(when.replace(tzinfo=None))
    return pb.ReportOutcomeRequest(transaction_id=txn_id, outcome=outcome, reported_at=stamp,  # type: ignore[arg-type]
                                   analyst="hotline", note="called back")


def test_reported_outcomes_close_alerts_and_become_labels(pipeline: ScoringPipeline, db: Path) -> None:
    """ReportOutcome (through the sink, off the hot path) closes the alert and keeps one label per report."""
    _raise_alerts(pipeline, db, [80_000.0])
    sink = AlertSink(db)
    when = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.UTC)
    sink.record_outcome(_outcome_request("tx-0", pb.OUTCOME_CONFIRMED_FRAUD, when))
    sink.record_outcome(_outcome_request("tx-0", pb.OUTCOME_CONFIRMED_FRAUD, when))  # delivered twice
    sink.record_outcome(_outcome_request("no-alert", pb.OUTCOME_LEGITIMATE, when))
    sink.record_outcome(_outcome_request("tx-0", pb.OUTCOME_UNSPECIFIED, when))  # ignored, never raised
    sink.close()
    with AlertStore.open(db) as store:
        alert = store.find("tx-0")
        assert alert is not None and (alert.state, alert.outcome) == ("closed", "confirmed_fraud")
        assert store.history(alert.alert_id)[-1].actor == "hotline"
        labels = store.outcomes()
    assert labels["transaction_id"].tolist() == ["tx-0", "no-alert"]
    assert labels["account_id"].tolist() == ["acct-0", ""]
    assert labels["reported_at"].iloc[0] == when


def test_database_is_in_wal_mode(pipeline: ScoringPipeline, db: Path) -> None:
    """Analysts read while the server writes: the journal is WAL."""
    _raise_alerts(pipeline, db, [80_000.0])
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_is_cheap_when_nothing_alerts(pipeline: ScoringPipeline, db: Path) -> None:
    """A batch without an alerting row queues nothing for the writer."""
    sink = AlertSink(db)
    batch = make_batch(np.full(50, 10.0))
    decisions = pipeline.run(batch)
    sink.record([f"q{i}" for i in range(50)], batch, decisions)
    assert sink.stats().submitted_rows == 0
    sink.close()


def test_model_reasons_of_a_batch_equal_one_explanation_per_alert(tmp_path: Path) -> None:
    """Alert rows hold exactly the model reasons of explain() row by row, whether the pipeline's tree walk made them
    or the writer's own (for decisions that came without)."""
    import review._alerts as alerts_module
    from features import FeatureConfig, FeatureEngine
    from loadtest import frame_to_requests, simulated_transactions
    from models import ModelRunner, default_model_dir
    from rules_engine import RuleSet
    from server import ActionPolicy, Settings, Snapshot
    from server._requests import encode_requests

    settings = Settings()
    config = FeatureConfig()
    snapshot = Snapshot(RuleSet.load(settings.rules_path), ModelRunner.load(default_model_dir()))
    pipeline = ScoringPipeline(engine=FeatureEngine.open(config), snapshot=snapshot,
                               policy=ActionPolicy.load(settings.policy_path))
    requests = frame_to_requests(simulated_transactions(4000, seed=3, fraud_scale=5.0).head(4000))
    records = encode_requests(requests, config)
    sink = AlertSink(tmp_path / "alerts.sqlite3")
    items: list[object] = []

    def capture(item: object, rows: int) -> bool:
        items.append(item)
        return True

    sink._writer.submit = capture  # type: ignore[method-assign]
    ids = [r.transaction.transaction_id for r in requests]
    decisions = pipeline.run(records, txn_ids=ids)
    sink.record(ids, records, decisions, account_ids=ids, counterparty_ids=ids)
    assert items
    assert all(item.explained for item in items)  # type: ignore[attr-defined]
    from_pipeline = [row for item in items for row in alerts_module._alert_rows(item)]  # type: ignore[arg-type]
    for item in items:
        item.explained = {}  # type: ignore[attr-defined]
    batched = [row for item in items for row in alerts_module._alert_rows(item)]  # type: ignore[arg-type]
    one_by_one = alerts_module._model_explanations
    try:
        alerts_module._model_explanations = lambda item: {}
        single = [row for item in items for row in alerts_module._alert_rows(item)]  # type: ignore[arg-type]
    finally:
        alerts_module._model_explanations = one_by_one
    assert from_pipeline == batched == single
    assert sum('"source": "model"' in row[15] for row in batched) >= 5  # model reasons were compared
    sink.close()


def test_feature_json_is_what_json_dumps_writes() -> None:
    """Each row's stored features equal json.dumps of its {name: value} dict, NaN, infinities and -0.0 included."""
    rng = np.random.default_rng(11)
    features = rng.lognormal(0.0, 4.0, size=(300, len(FEATURE_NAMES))) * rng.choice([-1.0, 1.0], size=(300, 1))
    features[::7, 3] = np.nan
    features[1::11, 5] = np.inf
    features[2::13, 8] = -np.inf
    features[3::5, 0] = -0.0
    features[4::3, 2] = 1e-300
    features[:, 1] = np.round(features[:, 1])  # whole numbers are floats too
    expected = [json.dumps(dict(zip(FEATURE_NAMES, row, strict=True))) for row in features.tolist()]
    import review._alerts as alerts_module

    assert alerts_module._features_json(features) == expected


def test_event_times_are_written_as_each_was_formatted_alone() -> None:
    """The alert rows' event times, formatted for a whole batch at once, equal the one-by-one ISO form."""
    from review._alerts import _iso_us, _iso_us_many

    rng = np.random.default_rng(11)
    micros = np.concatenate([
        np.array([0, 1, 999_999, 1_000_000, T0_US, 253_402_300_799_999_999], dtype=np.int64),  # ... to 9999-12-31
        rng.integers(946_684_800_000_000, 4_102_444_800_000_000, 500, dtype=np.int64),  # 2000 to 2100
    ])
    assert _iso_us_many(micros) == [_iso_us(m) for m in micros.tolist()]



def test_rule_id_lists_and_reasons_are_the_text_json_dumps_writes(
    pipeline: ScoringPipeline, db: Path, rules: RuleSet
) -> None:
    """Rule id lists joined from each id's JSON string, and the stored reasons, equal json.dumps' text."""
    from review._alerts import _json_ids, _quoted_ids

    quoted = _quoted_ids(rules)
    assert _quoted_ids(rules) is quoted  # worked out once per rule set
    n = len(rules.rules)
    for columns in ([], [0], [2, 0], list(range(n)), [n - 1, 1]):
        assert _json_ids(quoted, columns) == json.dumps([rules.rules[j].id for j in columns])
    _raise_alerts(pipeline, db, [80_000.0, 150_000.0])
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT rule_hits, shadow_hits, reasons FROM alerts").fetchall()
    conn.close()
    assert rows and all(json.loads(hits) for hits, _, _ in rows)
    for hits, shadow, reasons in rows:
        assert hits == json.dumps(json.loads(hits)) and shadow == json.dumps(json.loads(shadow))
        assert reasons == json.dumps(json.loads(reasons), ensure_ascii=False)


def test_an_alert_words_its_reasons_as_the_reply_does(tmp_path: Path) -> None:
    """With the shipped rules and model, each reason a reply shows (code, points, words in zh-CN and in en) is the
    stored alert's reason of the same rank: rule reasons carry the rule's id as their code in both (the alert once
    wrote R_<id>), and model reasons M_<feature>."""
    from features import FeatureConfig, FeatureEngine
    from loadtest import frame_to_requests, simulated_transactions
    from models import ModelRunner, default_model_dir
    from server import ActionPolicy, Settings, Snapshot
    from server._requests import encode_requests, review_extra
    from server._responses import build_response

    settings = Settings()
    config = FeatureConfig()
    rules = RuleSet.load(settings.rules_path)
    policy = ActionPolicy.load(settings.policy_path)
    snapshot = Snapshot(rules, ModelRunner.load(default_model_dir()))
    pipeline = ScoringPipeline(engine=FeatureEngine.open(config), snapshot=snapshot, policy=policy)
    requests = frame_to_requests(simulated_transactions(3000, seed=5, fraud_scale=5.0).head(3000))
    records = encode_requests(requests, config)
    ids = [r.transaction.transaction_id for r in requests]
    decisions = pipeline.run(records, txn_ids=ids, extra=review_extra(requests), record=False)
    sink = AlertSink(tmp_path / "alerts.sqlite3")
    sink.record(ids, records, decisions)
    sink.close()
    with AlertStore.open(tmp_path / "alerts.sqlite3") as store:
        alerts = {alert.transaction_id: alert for alert in store.list_alerts(limit=10_000)}
    assert len(alerts) >= 20
    rule_ids = {rule.id for rule in rules.rules}
    sources: set[str] = set()
    for row, txn_id in enumerate(ids):
        if txn_id not in alerts:
            continue
        stored = alerts[txn_id].reasons
        sources.update(reason.source for reason in stored)
        assert all(reason.code in rule_ids for reason in stored if reason.source == "rule")
        for locale, words in (("zh-CN", "message_zh"), ("en", "message_en")):
            reply = build_response(row, txn_id, decisions, locale=locale, explain=False, policy=policy)
            shown = [(r.code, r.contribution, r.message) for r in reply.reasons]
            assert shown == [(r.code, r.points, getattr(r, words)) for r in stored][: len(shown)]
    assert sources == {"rule", "model"}
