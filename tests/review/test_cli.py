"""The analysts' CLI: outpost backtest, alerts, report and investigate (through review.cli.main)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from review import AlertStore, cli
from server import ScoringPipeline

from .conftest import RULES_YAML
from .test_alerts import _raise_alerts
from .test_backtest import DRAFT_YAML


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("rules")
    (directory / "live.yaml").write_text(RULES_YAML, encoding="utf-8")
    (directory / "draft.yaml").write_text(DRAFT_YAML, encoding="utf-8")
    return directory / "live.yaml", directory / "draft.yaml"


def test_backtest_report_and_investigate_commands(
    bank: pd.DataFrame, bank_csv: Path, rule_files: tuple[Path, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """backtest writes scores and a JSON report with the draft; report and investigate write HTML pages."""
    live, draft = rule_files
    start = pd.to_datetime(bank["event_time"], utc=True).iloc[len(bank) // 2]
    code = cli.main(["backtest", "--data", str(bank_csv), "--rules", str(live), "--compare-rules", str(draft),
                     "--no-model", "--from", start.isoformat(), "--label-delay-days", "3",
                     "--out", str(tmp_path / "scores.csv"), "--report-json", str(tmp_path / "report.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "draft vs live: added ['NEW_NIGHT_LARGE']" in out and "txn/s" in out
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["data"]["label_delay_days"] == 3.0
    assert report["data"]["rows_scored"] == int((pd.to_datetime(bank["event_time"], utc=True) >= start).sum())
    assert "NEW_NIGHT_LARGE" in {r["id"] for r in report["draft"]["rules"]}
    assert report["model_version"] == ""

    assert cli.main(["report", "backtest", "--scores", str(tmp_path / "scores.csv"), "--report-json",
                     str(tmp_path / "report.json"), "--out", str(tmp_path / "report.html")]) == 0
    assert (tmp_path / "report.html").read_text(encoding="utf-8").count("data:image/png;base64,") >= 6
    # conftest pins "no CJK font": the analyst is told why the charts are English and what to install
    assert "fonts-wqy-microhei" in capsys.readouterr().err

    account = bank.loc[bank["is_fraud"] == 1, "account_id"].iloc[0]
    assert cli.main(["investigate", str(account), "--data", str(bank_csv),
                     "--out", str(tmp_path / "account.html")]) == 0
    assert (tmp_path / "account.html").read_text(encoding="utf-8").count("data:image/png;base64,") == 4


def test_backtest_with_a_broken_rule_file_says_where(bank_csv: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A draft that does not compile is reported with its line and column, exit code 2."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(RULES_YAML.replace("amount_cny >= 50000", "amount_cnyy >= 50000"), encoding="utf-8")
    code = cli.main(["backtest", "--data", str(bank_csv), "--compare-rules", str(broken), "--no-model",
                     "--out", str(tmp_path / "s.csv")])
    assert code == 2
    assert "amount_cnyy" in capsys.readouterr().err


def test_alerts_commands(pipeline: ScoringPipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """list, show, assign, escalate and close change the store; refused changes exit 1 with the reason."""
    db = tmp_path / "alerts.sqlite3"
    _raise_alerts(pipeline, db, [80_000.0, 90_000.0])
    base = ["alerts", "--db", str(db)]
    assert cli.main([*base, "list"]) == 0
    listing = capsys.readouterr().out
    assert "open: 2" in listing and "acct-0" in listing and "BIG_AMOUNT" in listing
    with AlertStore.open(db) as store:
        first, second = (a.alert_id for a in store.list_alerts(order="oldest"))
    assert cli.main([*base, "assign", str(first), "--to", "wang"]) == 0
    assert cli.main([*base, "escalate", str(first), "--by", "wang", "--note", "large, new payee"]) == 0
    assert cli.main([*base, "close", str(first), "--outcome", "customer_dissuaded", "--by", "wang"]) == 0
    capsys.readouterr()
    assert cli.main([*base, "show", str(first)]) == 0
    shown = capsys.readouterr().out
    assert "[closed]" in shown and "outflow of 80,000 CNY" in shown and "转出金额80,000元" in shown
    assert "escalate" in shown and "customer_dissuaded" in shown
    assert cli.main([*base, "assign", str(first), "--to", "li"]) == 1
    assert "closed alerts cannot be reassigned" in capsys.readouterr().err
    assert cli.main([*base, "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["alert_id"] for r in rows] == [second]  # closed ones are hidden by default
    assert cli.main([*base, "list", "--all", "--json", "--order", "oldest"]) == 0
    assert [json.loads(x)["state"] for x in capsys.readouterr().out.splitlines()] == ["closed", "open"]
    assert cli.main([*base, "show", "999"]) == 1
    with AlertStore.open(db) as store:
        assert store.outcomes()["outcome"].tolist() == ["customer_dissuaded"]


def test_closing_with_an_unreachable_server_keeps_the_local_close(
    pipeline: ScoringPipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """If the server cannot be reached the alert stays closed here and the command says how to resend."""
    db = tmp_path / "alerts.sqlite3"
    _raise_alerts(pipeline, db, [80_000.0])
    with AlertStore.open(db) as store:
        alert_id = store.list_alerts()[0].alert_id
    code = cli.main(["alerts", "--db", str(db), "close", str(alert_id), "--outcome", "confirmed_fraud", "--by", "li",
                     "--server", "127.0.0.1:1", "--timeout", "2"])
    assert code == 1
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err and f"outpost alerts send {alert_id} --server 127.0.0.1:1" in err
    with AlertStore.open(db) as store:
        assert store.get(alert_id).state == "closed"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Unknown commands, missing options and a missing database exit 2."""
    assert cli.main(["nonsense"]) == 2
    assert cli.main(["backtest"]) == 2
    assert cli.main(["alerts", "--db", str(tmp_path / "none.sqlite3"), "show", "1"]) == 2
    assert "no alert database" in capsys.readouterr().err
