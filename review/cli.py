"""``outpost backtest | alerts | report | investigate``: the analysts' command line (see docs/review.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _time(text: str) -> dt.datetime:
    """ISO-8601 date or time; a value without a zone is read as Asia/Shanghai local time (UTC+8)."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 date/time, e.g. 2026-03-01 or "
                                         "2026-03-01T08:00:00+08:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
    return value


def _settings() -> Any:
    from server import load_settings

    return load_settings()


def default_alerts_db() -> Path:
    from review._paths import alerts_db_path

    return alerts_db_path(_settings())


# -- backtest ---------------------------------------------------------------------------------------------------
def _backtest_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="outpost backtest",
        description="Replay a labelled transaction file through the live features, rules, model and policy.",
    )
    p.add_argument("--data", required=True, type=Path, help="transactions (CSV or Parquet, canonical columns)")
    p.add_argument("--mapping", type=Path, help="column mapping (JSON/YAML: canonical column -> file column)")
    p.add_argument("--rules", type=Path, help="rule file (default: the live one, OUTPOST_RULES_PATH)")
    p.add_argument("--compare-rules", type=Path, metavar="DRAFT", help="a draft rule file decided side by side")
    p.add_argument("--model", help="model version directory or version name (default: the live model)")
    p.add_argument("--no-model", action="store_true", help="rules only")
    p.add_argument("--policy", type=Path, help="action policy TOML (default: the live one)")
    p.add_argument("--from", dest="start", type=_time, help="first event time scored (earlier rows build state)")
    p.add_argument("--to", dest="end", type=_time, help="event times from here on are left out")
    p.add_argument("--label-delay-days", type=float, default=7.0,
                   help="days after a fraud transaction its label reaches the features (default 7)")
    p.add_argument("--out", required=True, type=Path, help="scores file to write (.csv or .parquet)")
    p.add_argument("--report-json", type=Path, help="write the metrics report (JSON) here")
    p.add_argument("--top-pairs", type=int, default=10, help="overlapping rule pairs to report (default 10)")
    return p


def _load_model(value: str | None, settings: Any) -> Any:
    from models import ModelRunner, default_model_dir

    if value is None:
        directory = settings.model_dir or default_model_dir()
    else:
        directory = Path(value)
        if not directory.is_dir():
            directory = default_model_dir().parent / value
    model = ModelRunner.load(directory)
    model.warm()
    return model


def _backtest(argv: Sequence[str]) -> int:
    args = _backtest_parser().parse_args(argv)
    from features import FeatureConfig
    from models import ModelError, load_transactions
    from review._backtest import BacktestConfig, run_backtest
    from review._errors import ReviewError
    from rules_engine import RuleError, RuleSet
    from server import ActionPolicy, ServerError

    try:
        settings = _settings()
        rules = RuleSet.load(args.rules or settings.rules_path)
        draft = RuleSet.load(args.compare_rules) if args.compare_rules else None
        model = None if args.no_model else _load_model(args.model, settings)
        policy = ActionPolicy.load(args.policy or settings.policy_path)
        config = BacktestConfig(start=args.start, end=args.end, label_delay_days=args.label_delay_days,
                                feature_config=FeatureConfig(home_country=settings.home_country),
                                top_pairs=args.top_pairs)
        frame = load_transactions(args.data, args.mapping)
        result = run_backtest(frame, rules=rules, model=model, policy=policy, config=config, draft_rules=draft,
                              source=str(args.data))
        result.write_scores(args.out)
    except (ReviewError, RuleError, ModelError, ServerError, OSError) as exc:
        print(f"outpost backtest: {exc}", file=sys.stderr)
        return 2
    report = result.report
    report["data"]["scores_file"] = str(args.out)
    if args.report_json:
        args.report_json.parent.mkdir(parents=True, exist_ok=True)
        args.report_json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    _print_backtest(report)
    return 0


def _pct(value: object) -> str:
    return f"{float(value) * 100:.2f}%" if isinstance(value, (int, float)) else "-"


def _num(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _print_backtest(report: dict[str, Any]) -> None:
    data, speed = report["data"], report["throughput"]
    print(f"replayed {speed['rows_replayed']:,} transactions, scored {data['rows_scored']:,} "
          f"({data['first_event_time']} .. {data['last_event_time']}) in {speed['seconds']:.2f} s "
          f"= {speed['rows_per_second']:,.0f} txn/s")
    runs = [("live", report["live"])] + ([("draft", report["draft"])] if "draft" in report else [])
    print(f"{'':8}{'AUC':>8}{'AP':>8}{'alerts':>9}{'rate':>8}{'precision':>11}{'recall':>8}")
    for name, run in runs:
        h = run["hybrid"]
        print(f"{name:8}{_num(h['auc']):>8}{_num(h['average_precision']):>8}{h['alerts']:>9,}"
              f"{_pct(h['alert_rate']):>8}{_pct(h['precision']):>11}{_pct(h['recall']):>8}")
    print("\nrules with most hits (live):")
    top = sorted(report["live"]["rules"], key=lambda r: -r["hits"])[:10]
    for rule in top:
        print(f"  {rule['id']:<36}{rule['mode']:<7}{rule['hits']:>8,} hits  precision {_pct(rule['precision']):>8}"
              f"  recall {_pct(rule['recall']):>8}")
    if "compare" in report:
        c = report["compare"]
        print(f"\ndraft vs live: added {c['added'] or '-'}, removed {c['removed'] or '-'}, "
              f"changed {c['changed'] or '-'}\n  alerts {c['alerts_live']:,} -> {c['alerts_draft']:,} "
              f"(only live {c['alerts_only_live']:,}, "
              f"only draft {c['alerts_only_draft']:,}); actions changed on {c['actions_changed']:,} transactions")


# -- alerts -----------------------------------------------------------------------------------------------------
def _alerts_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="outpost alerts", description="List, assign, escalate and close alerts.")
    p.add_argument("--db", type=Path, help="alert database (default: <OUTPOST_DATA_DIR>/alerts.sqlite3)")
    sub = p.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="list alerts, newest first")
    ls.add_argument("--state", action="append", choices=["open", "under_review", "escalated", "closed"],
                    help="repeatable; default: every state but closed")
    ls.add_argument("--all", action="store_true", help="closed alerts too")
    ls.add_argument("--assignee")
    ls.add_argument("--account", help="account id (or its 16-hex key)")
    ls.add_argument("--action", dest="alert_action", choices=["REVIEW", "CHALLENGE", "BLOCK"])
    ls.add_argument("--min-risk", type=int)
    ls.add_argument("--since", type=_time, help="event time from")
    ls.add_argument("--until", type=_time, help="event time before")
    ls.add_argument("--order", choices=["newest", "oldest", "risk"], default="newest")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    show = sub.add_parser("show", help="one alert with its reasons, features and history")
    show.add_argument("alert_id", type=int)
    show.add_argument("--json", action="store_true")
    assign = sub.add_parser("assign", help="give an alert to an analyst (open -> under_review)")
    assign.add_argument("alert_id", type=int)
    assign.add_argument("--to", required=True, help="analyst")
    assign.add_argument("--by", default="", help="who assigns (default: the assignee)")
    assign.add_argument("--note", default="")
    esc = sub.add_parser("escalate", help="escalate an open or under-review alert")
    esc.add_argument("alert_id", type=int)
    esc.add_argument("--by", required=True)
    esc.add_argument("--note", default="")
    close = sub.add_parser("close", help="close an alert with its outcome (and report it to the server)")
    close.add_argument("alert_id", type=int)
    close.add_argument("--outcome", required=True,
                       choices=["confirmed_fraud", "false_positive", "customer_dissuaded", "suspicious_reported",
                                "legitimate"])
    close.add_argument("--by", required=True, help="analyst closing it")
    close.add_argument("--note", default="")
    close.add_argument("--reported-at", type=_time, help="when the outcome became known (default: now)")
    _server_options(close)
    send = sub.add_parser("send", help="(re)send the outcome of a closed alert to the server")
    send.add_argument("alert_id", type=int)
    _server_options(send, required=True)
    return p


def _server_options(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument("--server", required=required, metavar="HOST:PORT",
                   help="report the outcome to this Outpost server (RiskScoring/ReportOutcome)")
    p.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) of the server; plaintext without it")
    p.add_argument("--token-env", default="OUTPOST_TOKEN",
                   help="environment variable holding the bearer token (default OUTPOST_TOKEN)")
    p.add_argument("--timeout", type=float, default=10.0)


def _alert_line(alert: Any) -> str:
    account = alert.account_id or alert.account_key
    return (f"{alert.alert_id:>6}  {alert.state:<12} {alert.action:<9} {alert.risk:>4}  "
            f"{alert.event_time:%Y-%m-%d %H:%M}  {account:<20} {alert.amount_cny:>14,.2f}  "
            f"{alert.assignee or '-':<10} {','.join(alert.rule_hits) or '-'}")


def _print_alert(alert: Any, history: Sequence[Any]) -> None:
    print(f"alert {alert.alert_id}  [{alert.state}]  {alert.action}  risk {alert.risk}")
    print(f"  transaction  {alert.transaction_id} at {alert.event_time:%Y-%m-%d %H:%M:%S} UTC")
    print(f"  account      {alert.account_id or '(id not recorded)'}  key {alert.account_key}")
    print(f"  counterparty {alert.counterparty_id or '-'}  key {alert.counterparty_key or '-'}")
    print(f"  amount       {alert.amount_cny:,.2f} CNY ({alert.amount_minor} minor units)  {alert.txn_type} "
          f"via {alert.channel}")
    prob = "-" if alert.model_probability is None else f"{alert.model_probability:.4f}"
    print(f"  model p      {prob}  ruleset {alert.ruleset_version}  model {alert.model_version or '-'}")
    print(f"  assignee     {alert.assignee or '-'}   outcome {alert.outcome or '-'}   note {alert.note or '-'}")
    if alert.shadow_hits:
        print(f"  shadow hits  {', '.join(alert.shadow_hits)}")
    print("  reasons:")
    for reason in alert.reasons:
        print(f"    {reason.points:7.1f}  {reason.code:<34} {reason.message_zh}")
        print(f"    {'':7}  {'':<34} {reason.message_en}")
    print("  history:")
    print(f"    {alert.created_at:%Y-%m-%d %H:%M:%S}  raised")
    for event in history:
        print(f"    {event.at:%Y-%m-%d %H:%M:%S}  {event.change:<9} {event.from_state} -> {event.to_state}  "
              f"by {event.actor}  {event.detail}")


def _send(store: Any, alert: Any, args: argparse.Namespace, reported_at: dt.datetime) -> int:
    from review._errors import OutcomeDeliveryError
    from review._outcomes import OutcomeReport, send_outcome

    report = OutcomeReport(
        transaction_id=alert.transaction_id, outcome=alert.outcome, reported_at=reported_at,
        account_id=alert.account_id, counterparty_id=alert.counterparty_id, analyst=alert.assignee,
        note=alert.note,
    )
    try:
        send_outcome(args.server, report, timeout=args.timeout, root_certificates=args.tls_ca,
                     token=os.environ.get(args.token_env, ""))
    except OutcomeDeliveryError as exc:
        print(f"outpost alerts: alert {alert.alert_id} is closed here, but {exc}\n"
              f"  resend with: outpost alerts send {alert.alert_id} --server {args.server}", file=sys.stderr)
        return 1
    print(f"reported {alert.outcome} for {alert.transaction_id} to {args.server}")
    return 0


def _alerts(argv: Sequence[str]) -> int:
    args = _alerts_parser().parse_args(argv)
    from review._alerts import AlertStore
    from review._errors import AlertError
    from server import ServerError

    try:
        db = args.db or default_alerts_db()
        if args.action != "list" and not db.exists():
            raise AlertError(f"no alert database at {db}; pass --db or set OUTPOST_DATA_DIR")
        store = AlertStore.open(db)
    except (AlertError, ServerError) as exc:
        print(f"outpost alerts: {exc}", file=sys.stderr)
        return 2
    try:
        with store:
            return _alerts_action(store, args)
    except AlertError as exc:
        print(f"outpost alerts: {exc}", file=sys.stderr)
        return 1


def _alerts_action(store: Any, args: argparse.Namespace) -> int:
    if args.action == "list":
        states = args.state or (None if args.all else ["open", "under_review", "escalated"])
        alerts = store.list_alerts(state=states, assignee=args.assignee, account=args.account,
                                   action=args.alert_action, min_risk=args.min_risk, since=args.since,
                                   until=args.until, order=args.order, limit=args.limit)
        if args.json:
            for alert in alerts:
                print(json.dumps(alert.to_dict(), ensure_ascii=False))
            return 0
        counts = store.counts()
        print("  ".join(f"{state}: {n}" for state, n in counts.items()))
        print(f"{'id':>6}  {'state':<12} {'action':<9} {'risk':>4}  {'event time (UTC)':<16}  {'account':<20} "
              f"{'amount CNY':>14}  {'assignee':<10} rules")
        for alert in alerts:
            print(_alert_line(alert))
        return 0
    if args.action == "show":
        alert = store.get(args.alert_id)
        history = store.history(args.alert_id)
        if args.json:
            out = alert.to_dict()
            out["history"] = [{"at": e.at.isoformat(), "actor": e.actor, "change": e.change,
                               "from_state": e.from_state, "to_state": e.to_state, "detail": e.detail}
                              for e in history]
            print(json.dumps(out, ensure_ascii=False, indent=2))
        else:
            _print_alert(alert, history)
        return 0
    if args.action == "assign":
        alert = store.assign(args.alert_id, args.to, actor=args.by, note=args.note)
    elif args.action == "escalate":
        alert = store.escalate(args.alert_id, actor=args.by, note=args.note)
    elif args.action == "close":
        reported_at = args.reported_at or dt.datetime.now(dt.UTC)
        alert = store.close(args.alert_id, args.outcome, actor=args.by, note=args.note, reported_at=reported_at)
        print(f"alert {alert.alert_id}: closed, outcome {alert.outcome}")
        return _send(store, alert, args, reported_at) if args.server else 0
    else:  # send
        alert = store.get(args.alert_id)
        if alert.state != "closed":
            print(f"outpost alerts: alert {alert.alert_id} is {alert.state}; close it with an outcome first",
                  file=sys.stderr)
            return 1
        labels = store.outcomes()
        mine = labels.loc[labels["transaction_id"] == alert.transaction_id]
        reported_at = mine["reported_at"].iloc[-1].to_pydatetime() if len(mine) else dt.datetime.now(dt.UTC)
        return _send(store, alert, args, reported_at)
    print(f"alert {alert.alert_id}: {alert.state}, assignee {alert.assignee or '-'}")
    return 0


# -- reports ----------------------------------------------------------------------------------------------------
def _report(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="outpost report", description="HTML reports with charts.")
    sub = p.add_subparsers(dest="kind", required=True)
    bt = sub.add_parser("backtest", help="the report of a backtest's scores")
    bt.add_argument("--scores", required=True, type=Path, help="the --out of `outpost backtest`")
    bt.add_argument("--report-json", type=Path, help="the --report-json of the same backtest (richer tables)")
    bt.add_argument("--out", required=True, type=Path, help="HTML file to write")
    bt.add_argument("--title", default="")
    args = p.parse_args(argv)
    from review._errors import ReviewError
    from review._reports import backtest_report, read_scores

    try:
        scores = read_scores(args.scores)
        report = json.loads(args.report_json.read_text(encoding="utf-8")) if args.report_json else None
        page = backtest_report(scores, report, title=args.title)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page, encoding="utf-8")
    except (ReviewError, OSError, json.JSONDecodeError) as exc:
        print(f"outpost report: {exc}", file=sys.stderr)
        return 2
    _wrote(args.out, page)
    return 0


def _wrote(out: Path, page: str) -> None:
    from review._charts import chart_text

    print(f"wrote {out} ({len(page) // 1024} KiB)")
    if chart_text().cjk_family is None:
        print("charts are in English only: no CJK font found. Install one (Debian: apt-get install "
              "fonts-wqy-microhei), delete ~/.cache/matplotlib/fontlist-*.json, and run this again.", file=sys.stderr)


def _investigate(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="outpost investigate",
                                description="An account's investigation page: timeline, flows, counterparties.")
    p.add_argument("account", help="account id")
    p.add_argument("--data", required=True, type=Path, help="transactions (CSV or Parquet)")
    p.add_argument("--mapping", type=Path, help="column mapping (JSON/YAML)")
    p.add_argument("--decisions", type=Path, help="decision-log directory (adds risk scores and actions)")
    p.add_argument("--alerts-db", type=Path, help="alert database (adds the account's alerts)")
    p.add_argument("--out", required=True, type=Path, help="HTML file to write")
    args = p.parse_args(argv)
    from features import FeatureConfig
    from models import ModelError, load_transactions
    from review._alerts import AlertStore
    from review._decision_log import read_decisions
    from review._errors import ReviewError
    from review._reports import investigation_report
    from server import ServerError

    try:
        settings = _settings()
        frame = load_transactions(args.data, args.mapping)
        decisions = read_decisions(args.decisions) if args.decisions else None
        alerts = []
        if args.alerts_db:
            with AlertStore.open(args.alerts_db) as store:
                alerts = store.list_alerts(account=args.account, order="oldest", limit=None)
        page = investigation_report(args.account, frame, decisions=decisions, alerts=alerts,
                                    config=FeatureConfig(home_country=settings.home_country))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page, encoding="utf-8")
    except (ReviewError, ModelError, ServerError, OSError) as exc:
        print(f"outpost investigate: {exc}", file=sys.stderr)
        return 2
    _wrote(args.out, page)
    return 0


_COMMANDS = {"backtest": _backtest, "alerts": _alerts, "report": _report, "investigate": _investigate}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``outpost backtest|alerts|report|investigate ...``; returns the exit code (0 ok, 1 failed, 2 bad input)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _COMMANDS:
        print(f"usage: outpost {{{'|'.join(_COMMANDS)}}} ... (see `outpost COMMAND --help`)", file=sys.stderr)
        return 2
    try:
        return _COMMANDS[args[0]](args[1:])
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else 2


if __name__ == "__main__":
    raise SystemExit(main())
