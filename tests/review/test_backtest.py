"""Backtests: replay through the online features and decide(), label delay, time window, metrics, drafts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import ModelRunner
from review import BacktestConfig, BacktestError, BacktestResult, read_scores, run_backtest
from review._metrics import overlap_pairs, ranking_metrics
from rules_engine import RuleSet
from server import ActionPolicy

from .conftest import RULES_YAML

DRAFT_YAML = RULES_YAML.replace('version: "test-1"', 'version: "test-2-draft"') + """
  - id: NEW_NIGHT_LARGE
    description: {zh-CN: 夜间大额, en: large at night}
    typology: velocity
    when: is_night and amount_cny >= 1000
    score: 300
    reason: {zh-CN: "凌晨大额", en: "large at night"}
"""


@pytest.fixture(scope="module")
def bank_result(bank: pd.DataFrame, rules: RuleSet, model: ModelRunner, policy: ActionPolicy) -> BacktestResult:
    draft = RuleSet.compile(DRAFT_YAML, source="draft.yaml")
    return run_backtest(bank, rules=rules, model=model, policy=policy, draft_rules=draft, source="bank")


def _hit_sets(column: pd.Series) -> list[set[str]]:
    return [set(h.split(";")) - {""} for h in column.tolist()]


def _independent_rule_stats(scores: pd.DataFrame, column: str, rule_id: str) -> tuple[int, int, float, float]:
    hit = np.array([rule_id in s for s in _hit_sets(scores[column])])
    fraud = (scores["label"] == 1).to_numpy()
    tp = int((hit & fraud).sum())
    return int(hit.sum()), tp, tp / hit.sum(), tp / fraud.sum()


def test_scores_file_has_one_row_per_transaction(bank_result: BacktestResult, bank: pd.DataFrame,
                                                 tmp_path: Path) -> None:
    """scores.csv: id, time, account, risk, action, probability, ';'-joined hits and the label, per transaction."""
    path = tmp_path / "scores.csv"
    bank_result.write_scores(path)
    scores = read_scores(path)
    assert len(scores) == len(bank)
    assert scores["transaction_id"].tolist() == bank["transaction_id"].astype(str).tolist()
    assert scores["account_id"].tolist() == bank["account_id"].astype(str).tolist()
    assert (scores["event_time"].to_numpy() == pd.to_datetime(bank["event_time"], utc=True).to_numpy()).all()
    assert scores["label"].tolist() == bank["is_fraud"].astype(int).tolist()
    assert scores["risk"].tolist() == bank_result.live.risk.tolist()
    assert set(scores["action"]) <= {"ALLOW", "REVIEW", "CHALLENGE", "BLOCK"}
    assert scores["probability"].between(0, 1).all() and scores["probability"].gt(0).all()
    rule_ids = [r.id for r in bank_result.live.rules.rules]
    expected = [{rule_ids[j] for j in np.flatnonzero(row)} for row in bank_result.live.hits]
    assert _hit_sets(scores["hits"]) == expected
    assert {"draft_risk", "draft_action", "draft_hits"} <= set(scores.columns)


def test_per_rule_precision_and_recall_match_the_scores(bank_result: BacktestResult, tmp_path: Path) -> None:
    """The report's per-rule hits, precision and recall equal a count over scores.csv."""
    path = tmp_path / "scores.csv"
    bank_result.write_scores(path)
    scores = read_scores(path)
    for row in bank_result.report["live"]["rules"]:
        if row["hits"] == 0:
            continue
        hits, tp, precision, recall = _independent_rule_stats(scores, "hits", row["id"])
        assert (row["hits"], row["true_positives"]) == (hits, tp)
        assert row["precision"] == pytest.approx(precision, abs=1e-6)
        assert row["recall"] == pytest.approx(recall, abs=1e-6)
    assert any(row["hits"] for row in bank_result.report["live"]["rules"])


def test_draft_rule_file_reports_its_own_precision_and_recall(bank_result: BacktestResult, tmp_path: Path) -> None:
    """A draft with an added rule: the draft's table has the rule's precision/recall; compare lists it as added."""
    report = bank_result.report
    assert report["compare"]["added"] == ["NEW_NIGHT_LARGE"]
    assert report["compare"]["removed"] == [] and report["compare"]["changed"] == []
    path = tmp_path / "scores.csv"
    bank_result.write_scores(path)
    scores = read_scores(path)
    new = next(r for r in report["draft"]["rules"] if r["id"] == "NEW_NIGHT_LARGE")
    hits, tp, precision, recall = _independent_rule_stats(scores, "draft_hits", "NEW_NIGHT_LARGE")
    assert hits > 0 and (new["hits"], new["true_positives"]) == (hits, tp)
    assert new["precision"] == pytest.approx(precision, abs=1e-6)
    assert new["recall"] == pytest.approx(recall, abs=1e-6)
    assert bank_result.draft is not None  # the model ran once per chunk for both rule sets, same input
    np.testing.assert_array_equal(bank_result.draft.probability, bank_result.live.probability)
    flagged_live = scores["action"] != "ALLOW"
    flagged_draft = scores["draft_action"] != "ALLOW"
    assert report["compare"]["alerts_only_draft"] == int((flagged_draft & ~flagged_live).sum())


def test_hybrid_metrics_are_reported_with_labels(bank_result: BacktestResult) -> None:
    """AUC, average precision and precision/recall at the REVIEW threshold, for hybrid, model and rules alone."""
    live = bank_result.report["live"]
    fraud = bank_result.rows["label"].to_numpy() == 1
    flagged = bank_result.live.actions >= 2
    hybrid = live["hybrid"]
    assert hybrid["alerts"] == int(flagged.sum())
    assert hybrid["precision"] == pytest.approx((flagged & fraud).sum() / flagged.sum(), abs=1e-6)
    assert hybrid["recall"] == pytest.approx((flagged & fraud).sum() / fraud.sum(), abs=1e-6)
    assert 0.5 < hybrid["auc"] <= 1 and 0 < hybrid["average_precision"] <= 1
    assert live["model_only"]["auc"] is not None and live["rules_only"]["auc"] is not None
    assert sum(live["actions"].values()) == len(bank_result.rows)
    assert set(live["typologies"]) <= set(bank_result.rows["typology"]) - {""}
    assert bank_result.report["throughput"]["rows_per_second"] > 0


def test_chunking_does_not_change_any_decision(bank: pd.DataFrame, rules: RuleSet, policy: ActionPolicy,
                                               bank_result: BacktestResult) -> None:
    """Replaying in chunks of 97 rows (labels split across chunks) gives exactly the decisions of one pass."""
    small = run_backtest(bank, rules=rules, model=None, policy=policy, config=BacktestConfig(chunk_rows=97))
    whole = run_backtest(bank, rules=rules, model=None, policy=policy, config=BacktestConfig(chunk_rows=10**7))
    np.testing.assert_array_equal(small.live.risk, whole.live.risk)
    np.testing.assert_array_equal(small.live.hits, whole.live.hits)
    np.testing.assert_array_equal(small.live.actions, whole.live.actions)
    assert bank_result.report["data"]["outcomes_fed"] == int(((bank["is_fraud"] == 1)
                                                              & (bank["counterparty_id"] != "")).sum())


def test_a_time_window_scores_only_its_rows_but_keeps_the_history(
    bank: pd.DataFrame, rules: RuleSet, policy: ActionPolicy
) -> None:
    """--from/--to: rows before 'from' only build state, so windowed decisions equal the full run's."""
    times = pd.to_datetime(bank["event_time"], utc=True)
    start = times.iloc[len(bank) // 3].to_pydatetime()
    end = times.iloc[2 * len(bank) // 3].to_pydatetime()
    full = run_backtest(bank, rules=rules, model=None, policy=policy)
    window = run_backtest(bank, rules=rules, model=None, policy=policy, config=BacktestConfig(start=start, end=end))
    inside = ((times >= start) & (times < end)).to_numpy()
    assert len(window.rows) == inside.sum()
    assert window.rows["event_time"].min() >= start and window.rows["event_time"].max() < end
    np.testing.assert_array_equal(window.live.risk, full.live.risk[inside])
    np.testing.assert_array_equal(window.live.hits, full.live.hits[inside])


def _label_frame() -> pd.DataFrame:
    t0 = pd.Timestamp("2026-03-02T02:00:00Z")
    rows = [  # (id, time offset, account, fraud)
        ("first", pd.Timedelta(0), "victim", 1),
        ("day3", pd.Timedelta(days=3), "b", 0),
        ("day6", pd.Timedelta(days=6, hours=23), "c", 0),
        ("day8", pd.Timedelta(days=8), "d", 0),
        ("day9", pd.Timedelta(days=9), "e", 0),
    ]
    return pd.DataFrame({
        "transaction_id": [r[0] for r in rows], "event_time": [t0 + r[1] for r in rows],
        "account_id": [r[2] for r in rows], "counterparty_id": "scam-payee", "amount_minor": 500_000,
        "currency": "CNY", "type": "TRANSFER_OUT", "channel": "MOBILE", "is_fraud": [r[3] for r in rows],
    })


@pytest.mark.parametrize(("delay_days", "expected"), [(7.0, ["day8", "day9"]), (8.5, ["day9"]), (30.0, [])])
def test_labels_reach_counterparty_features_only_after_the_delay(
    rules: RuleSet, policy: ActionPolicy, delay_days: float, expected: list[str]
) -> None:
    """A confirmed fraud on a payee counts for later payments only from its transaction time plus the delay."""
    result = run_backtest(_label_frame(), rules=rules, model=None, policy=policy,
                          config=BacktestConfig(label_delay_days=delay_days))
    column = [r.id for r in rules.rules].index("PAYEE_REPORTED")
    hit = result.live.hits[:, column].astype(bool)
    assert result.rows.loc[hit, "transaction_id"].tolist() == expected


def test_config_errors_say_what_to_fix(bank: pd.DataFrame, rules: RuleSet, policy: ActionPolicy) -> None:
    """Naive times, an empty window and a negative delay are refused with a hint."""
    with pytest.raises(BacktestError, match="timezone-aware"):
        BacktestConfig(start=dt.datetime(2026, 1, 1))
    with pytest.raises(BacktestError, match="not after start"):
        BacktestConfig(start=dt.datetime(2026, 2, 1, tzinfo=dt.UTC), end=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(BacktestError, match="label_delay_days"):
        BacktestConfig(label_delay_days=-1)
    with pytest.raises(BacktestError, match="--from/--to"):
        run_backtest(bank, rules=rules, model=None, policy=policy,
                     config=BacktestConfig(start=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)))


def test_overlap_pairs_are_jaccard_of_hit_sets() -> None:
    """Jaccard = |A and B| / |A or B|, most similar pair first, pairs that never co-occur left out."""
    hits = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=np.uint8)
    pairs = overlap_pairs(hits, ["A", "B", "C"], top=5)
    assert pairs == [{"a": "A", "b": "B", "jaccard": 0.5, "both": 2, "a_hits": 3, "b_hits": 3}]


def test_ranking_metrics_need_both_classes() -> None:
    """With a single class AUC and AP are undefined (None), not a misleading number."""
    assert ranking_metrics(np.array([1.0, 2.0]), np.array([0, 0])) == {"auc": None, "average_precision": None}
    assert ranking_metrics(np.array([1.0, 2.0]), np.array([0, 1]))["auc"] == 1.0
