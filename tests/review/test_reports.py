"""HTML reports: self-contained pages whose charts are embedded PNGs, with the expected titles."""

from __future__ import annotations

import base64
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import review._charts as charts_module
from features import FeatureConfig, encode_frame
from models import ModelRunner
from review import (
    AlertSink,
    AlertStore,
    DecisionLog,
    ReportError,
    backtest_report,
    investigation_report,
    read_decisions,
    read_scores,
    run_backtest,
)
from review._charts import ChartText
from rules_engine import RuleSet
from server import ActionPolicy, ScoringPipeline

from .test_backtest import DRAFT_YAML

# Found at import, before conftest's english_chart_titles pins it: the CJK font this machine has, if any.
_INSTALLED_CJK_FAMILY = charts_module._cjk_family()


_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">')


def images(page: str) -> dict[str, bytes]:
    """Chart title -> PNG bytes of every embedded chart (each must be a real PNG)."""
    found = {alt: base64.b64decode(data) for data, alt in _IMG.findall(page)}
    for title, png in found.items():
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), title
        assert len(png) > 5_000, title  # a drawn chart, not an empty canvas
    return found


@pytest.fixture(scope="module")
def scores_and_report(bank: pd.DataFrame, rules: RuleSet, model: ModelRunner, policy: ActionPolicy,
                      tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict[str, object]]:
    draft = RuleSet.compile(DRAFT_YAML, source="draft.yaml")
    result = run_backtest(bank, rules=rules, model=model, policy=policy, draft_rules=draft)
    path = tmp_path_factory.mktemp("report") / "scores.csv"
    result.write_scores(path)
    return read_scores(path), json.loads(json.dumps(result.report))


def test_backtest_report_holds_every_chart(scores_and_report: tuple[pd.DataFrame, dict[str, object]]) -> None:
    """Score/alert rate over time, actions, distribution, precision-recall, rule hits and precision, overlap, draft."""
    scores, report = scores_and_report
    page = backtest_report(scores, report)
    charts = images(page)
    assert set(charts) == {
        "Risk score and alert rate over time",
        "Alerts by action over time",
        "Risk score distribution",
        "Precision-recall of the hybrid score",
        f"Rule hits and precision (top {min(25, int((_rule_counts(scores) > 0).sum()))} rules by hits)",
        "Overlap between rules (Jaccard of hit sets)",
        "Rules whose hits change in the draft",
    }
    assert page.count("<figcaption>") == len(charts)
    for heading in ("规则命中与精确率", "Rules: hits, precision, overlap", "草案与现行规则对比", "Draft vs live rules",
                    "NEW_NIGHT_LARGE", "Recall by typology"):
        assert heading in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")  # self-contained


def _rule_counts(scores: pd.DataFrame) -> pd.Series:
    return scores["hits"].str.split(";").explode().replace("", np.nan).dropna().value_counts()


def test_backtest_report_without_labels_or_json(scores_and_report: tuple[pd.DataFrame, dict[str, object]]) -> None:
    """Unlabelled scores and no report JSON still render (no precision-recall chart, metrics computed)."""
    scores, _ = scores_and_report
    unlabelled = scores.drop(columns=[c for c in scores.columns if c.startswith("draft_")]).assign(
        label=pd.array([pd.NA] * len(scores), dtype="Int8"))
    charts = images(backtest_report(unlabelled))
    assert "Precision-recall of the hybrid score" not in charts
    assert "Risk score and alert rate over time" in charts and len(charts) == 5


def test_scores_file_must_come_from_a_backtest(tmp_path: Path) -> None:
    """A CSV without the backtest columns is refused, naming what is missing."""
    path = tmp_path / "other.csv"
    pd.DataFrame({"a": [1]}).to_csv(path, index=False)
    with pytest.raises(ReportError, match="lacks columns"):
        read_scores(path)


def _logged_bank(bank: pd.DataFrame, pipeline: ScoringPipeline, directory: Path) -> tuple[pd.DataFrame, Path]:
    """The bank scored through the online pipeline with the decision log and alerts as sinks."""
    log = DecisionLog(directory / "decisions")
    alerts = AlertSink(directory / "alerts.sqlite3")
    txns = encode_frame(bank, FeatureConfig())
    ids = bank["transaction_id"].astype(str).tolist()
    accounts = bank["account_id"].astype(str).tolist()
    for start in range(0, len(txns), 500):
        stop = start + 500
        decisions = pipeline.run(txns[start:stop])
        decisions.extra["account_ids"] = accounts[start:stop]
        log.record(ids[start:stop], txns[start:stop], decisions)
        alerts.record(ids[start:stop], txns[start:stop], decisions)
    log.close()
    alerts.close()
    return read_decisions(directory / "decisions"), directory / "alerts.sqlite3"


def test_investigation_page_of_an_account(bank: pd.DataFrame, pipeline: ScoringPipeline, tmp_path: Path) -> None:
    """Timeline, risk per transaction, daily flows, hours of day and the counterparty network, with the alerts."""
    decisions, db = _logged_bank(bank, pipeline, tmp_path)
    with AlertStore.open(db) as store:
        alerted = store.list_alerts(limit=None)
        account = pd.Series([a.account_id for a in alerted]).value_counts().index[0]
        mine = store.list_alerts(account=account, limit=None)
    page = investigation_report(account, bank, decisions=decisions, alerts=mine)
    charts = images(page)
    assert set(charts) == {
        "Transaction timeline",
        "Risk score of each transaction",
        "Inflow and outflow by day",
        "Amounts by hour of day (local time)",
        next(t for t in charts if t.startswith("Counterparties of the account (top ")),
    }
    assert account in page and "交易对手网络" in page
    assert all(a.transaction_id in page for a in mine[:5])
    own = bank.loc[bank["account_id"] == account]
    assert f"{len(own):,} transactions of the account" in page


def test_investigation_of_an_unknown_account_is_refused(bank: pd.DataFrame) -> None:
    """An id absent from the data is an error that says to check it."""
    with pytest.raises(ReportError, match="check the id"):
        investigation_report("no-such-account", bank)


def test_chart_text_falls_back_to_english_without_a_cjk_font() -> None:
    """Without a CJK font, labels are English and CJK characters never reach matplotlib."""
    plain, cjk = ChartText(None), ChartText("Noto Sans CJK SC")
    assert plain("Risk", "风险") == "Risk" and plain.safe("账户 acct") == "?? acct"
    assert cjk("Risk", "风险") == "风险 Risk" and cjk.safe("账户") == "账户"


def test_charts_draw_chinese_with_an_installed_cjk_font(
    scores_and_report: tuple[pd.DataFrame, dict[str, object]], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With a CJK font (CI installs fonts-wqy-microhei), titles are bilingual, every glyph and weight is found."""
    if _INSTALLED_CJK_FAMILY is None:
        pytest.skip("no CJK font found by matplotlib: apt-get install fonts-wqy-microhei, then clear its font cache")
    monkeypatch.setattr(charts_module, "_cjk_family", lambda: _INSTALLED_CJK_FAMILY)
    scores, report = scores_and_report
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" for what it cannot draw
        charts = images(backtest_report(scores, report))
    assert "风险分分布 Risk score distribution" in charts
    assert all(re.search("[\u4e00-\u9fff]", title) for title in charts)
    assert not [r.getMessage() for r in caplog.records if "findfont" in r.getMessage()]  # e.g. no bold face
