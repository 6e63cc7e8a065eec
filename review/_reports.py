"""Self-contained HTML reports with charts: a backtest's report and one account's investigation page.

Every chart is a PNG embedded as base64 (``<img src="data:image/png;base64,...">``), so a report is one file
that opens offline and can be attached to a case. Headings are bilingual (zh-CN / en); chart text is bilingual
only when a CJK font is installed (see ``review._charts``).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from features import FeatureConfig, encode_frame, stable_key
from review._alerts import Alert
from review._charts import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    PURPLE,
    RED,
    SKY,
    Chart,
    ChartText,
    chart_text,
    circle_positions,
    scaled_widths,
    shorten,
    time_buckets,
)
from review._errors import ReportError
from review._metrics import flagged_metrics, ranking_metrics

__all__ = ["backtest_report", "investigation_report", "read_scores"]

_OUTFLOW_TYPES = frozenset({"TRANSFER_OUT", "CASH_WITHDRAWAL", "CARD_PAYMENT", "BILL_PAYMENT", "VIRTUAL_ASSET"})
_ALERT_ACTIONS = ("REVIEW", "CHALLENGE", "BLOCK")
_ACTION_COLOURS = {"REVIEW": ORANGE, "CHALLENGE": PURPLE, "BLOCK": RED}
_SCORE_COLUMNS = ("transaction_id", "event_time", "account_id", "risk", "action", "hits", "label")
_MAX_NETWORK = 20

_CSS = """
body{font-family:"Noto Sans SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;border-bottom:3px solid #0072B2;padding-bottom:.3em}h2{font-size:1.25em;margin-top:2em;color:#0072B2}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eef4fa}td.l,th.l{text-align:left}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555}.muted{color:#777;font-size:.9em}
.kpi{display:inline-block;margin:.3em 1.2em .3em 0}
.kpi b{font-size:1.3em;display:block}
"""


# -- HTML helpers -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Section:
    title_zh: str
    title_en: str
    body: str


def _e(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], *, left: int = 1) -> str:
    head = "".join(f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = "".join(f'<td class="l">{_e(_fmt(v))}</td>' if i < left else f"<td>{_e(_fmt(v))}</td>"
                        for i, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(chart: Chart, caption: str = "") -> str:
    return (f'<figure><img src="data:image/png;base64,{chart.png}" alt="{_e(chart.title)}">'
            f"<figcaption>{_e(chart.title)}{(' — ' + _e(caption)) if caption else ''}</figcaption></figure>")


def _kpis(items: Sequence[tuple[str, object]]) -> str:
    return "<div>" + "".join(f'<span class="kpi"><b>{_e(_fmt(v, 3))}</b>{_e(k)}</span>' for k, v in items) + "</div>"


def _page(title: str, subtitle: str, sections: Sequence[_Section]) -> str:
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>", f'<p class="muted">{_e(subtitle)} · generated {generated} · Outpost</p>',
    ]
    for section in sections:
        parts.append(f"<h2>{_e(section.title_zh)} · {_e(section.title_en)}</h2>{section.body}")
    parts.append("</body></html>")
    return "\n".join(parts)


# -- backtest report --------------------------------------------------------------------------------------------
def read_scores(path: Path) -> pd.DataFrame:
    """A backtest's scores file (CSV or Parquet) with parsed times, '' for no hits and a nullable label."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={"hits": str, "draft_hits": str, "transaction_id": str,
                                             "account_id": str, "counterparty_id": str, "typology": str},
                                keep_default_na=False, na_values={"label": [""]})
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read the scores file {path}: {exc}; pass the --out of `outpost backtest`") from None
    missing = [c for c in _SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise ReportError(f"{path} lacks columns {missing}; it must be the scores file written by `outpost backtest`")
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601")
    for column in ("hits", "draft_hits"):
        if column in frame.columns:
            frame[column] = frame[column].fillna("").astype(str)
    frame["label"] = pd.to_numeric(frame["label"], errors="coerce").astype("Int8")
    return frame


def _rule_stats(scores: pd.DataFrame, column: str) -> pd.DataFrame:
    """Hits, true positives and precision per rule id from a ';'-joined hits column."""
    with_hits = scores.loc[scores[column] != "", [column, "label"]]
    if with_hits.empty:
        return pd.DataFrame({"hits": [], "true_positives": [], "precision": []})
    exploded = with_hits.assign(rule=with_hits[column].str.split(";")).explode("rule")
    grouped = exploded.groupby("rule")
    stats = pd.DataFrame({"hits": grouped.size()})
    if scores["label"].notna().any():
        stats["true_positives"] = (exploded["label"] == 1).groupby(exploded["rule"]).sum().astype(int)
        stats["precision"] = stats["true_positives"] / stats["hits"]
    else:
        stats["true_positives"] = np.nan
        stats["precision"] = np.nan
    return stats.sort_values("hits", ascending=False)


def _chart_score_over_time(scores: pd.DataFrame, t: ChartText, draft: bool) -> Chart:
    buckets, freq = time_buckets(scores["event_time"])
    flagged = scores["action"].isin(_ALERT_ACTIONS)
    grouped = pd.DataFrame({"bucket": buckets, "risk": scores["risk"], "flagged": flagged,
                            "fraud": scores["label"].fillna(0).astype(float)}).groupby("bucket")
    unit = {"h": "hour", "D": "day", "W": "week"}[freq]
    chart = Chart(t("Risk score and alert rate over time", "风险分与预警率走势"), text=t)
    with chart as fig:
        ax = fig.add_subplot()
        mean = grouped["risk"].mean()
        p99 = grouped["risk"].quantile(0.99)
        ax.plot(mean.index, mean.to_numpy(), color=BLUE, label=t("mean risk"))
        ax.plot(p99.index, p99.to_numpy(), color=BLUE, linestyle="--", alpha=0.6, label=t("p99 risk"))
        ax.set_ylabel(t("risk score (0..1000)"))
        ax.set_xlabel(t(f"event time (Asia/Shanghai, per {unit})"))
        right = ax.twinx()
        rate = grouped["flagged"].mean() * 100
        right.plot(rate.index, rate.to_numpy(), color=ORANGE, label=t("alert rate % (live)"))
        if draft and "draft_action" in scores.columns:
            draft_rate = scores["draft_action"].isin(_ALERT_ACTIONS).groupby(buckets).mean() * 100
            right.plot(draft_rate.index, draft_rate.to_numpy(), color=PURPLE, linestyle=":",
                       label=t("alert rate % (draft)"))
        if scores["label"].notna().any():
            fraud = grouped["fraud"].mean() * 100
            right.plot(fraud.index, fraud.to_numpy(), color="black", linestyle="-.", alpha=0.8,
                       label=t("fraud rate % (labels)"))
        right.set_ylabel(t("% of transactions"))
        right.set_ylim(bottom=0)
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
        fig.autofmt_xdate()
    return chart


def _chart_actions_over_time(scores: pd.DataFrame, t: ChartText) -> Chart:
    buckets, _ = time_buckets(scores["event_time"])
    counts = pd.crosstab(buckets, scores["action"])
    chart = Chart(t("Alerts by action over time", "各处置动作预警数走势"), text=t)
    with chart as fig:
        ax = fig.add_subplot()
        present = [a for a in _ALERT_ACTIONS if a in counts.columns]
        if present:
            ax.stackplot(counts.index, *[counts[a].to_numpy() for a in present],
                         colors=[_ACTION_COLOURS[a] for a in present], labels=present, alpha=0.85)
            ax.legend(loc="upper left", fontsize=8)
        else:
            ax.text(0.5, 0.5, t("no alerts"), ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel(t("transactions"))
        fig.autofmt_xdate()
    return chart


def _chart_risk_distribution(scores: pd.DataFrame, t: ChartText) -> Chart:
    chart = Chart(t("Risk score distribution", "风险分分布"), text=t)
    bins = np.linspace(0, 1000, 51).tolist()
    with chart as fig:
        ax = fig.add_subplot()
        if scores["label"].notna().any():
            fraud = scores["label"] == 1
            ax.hist(scores.loc[~fraud, "risk"], bins=bins, color=BLUE, alpha=0.6, label=t("normal"))
            ax.hist(scores.loc[fraud, "risk"], bins=bins, color=RED, alpha=0.7, label=t("fraud (label)"))
            ax.legend(fontsize=8)
        else:
            ax.hist(scores["risk"], bins=bins, color=BLUE)
        ax.set_yscale("log")
        ax.set_xlabel(t("risk score"))
        ax.set_ylabel(t("transactions (log scale)"))
    return chart


def _pr_curve(risk: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-risk, kind="stable")
    sorted_risk, sorted_labels = risk[order], labels[order]
    tp = np.cumsum(sorted_labels)
    last = np.r_[np.flatnonzero(np.diff(sorted_risk)), len(sorted_risk) - 1]  # one point per distinct threshold
    precision = tp[last] / (last + 1)
    recall = tp[last] / max(int(labels.sum()), 1)
    return recall, precision


def _chart_pr(scores: pd.DataFrame, t: ChartText) -> Chart:
    labels = (scores["label"] == 1).to_numpy(dtype=np.int64)
    chart = Chart(t("Precision-recall of the hybrid score", "混合评分的精确率-召回率曲线"), size=(6.0, 4.5), text=t)
    with chart as fig:
        ax = fig.add_subplot()
        for column, colour, name in (("risk", BLUE, "live"), ("draft_risk", PURPLE, "draft")):
            if column not in scores.columns:
                continue
            recall, precision = _pr_curve(scores[column].to_numpy(dtype=np.float64), labels)
            ax.plot(recall, precision, color=colour, label=t(f"{name} risk score"))
            action = "action" if name == "live" else "draft_action"
            flagged = scores[action].isin(_ALERT_ACTIONS).to_numpy()
            point = flagged_metrics(flagged, labels)
            if point["precision"] is not None and point["recall"] is not None:
                ax.scatter([point["recall"]], [point["precision"]], color=colour, zorder=3, s=40,
                           label=t(f"{name}: at the REVIEW threshold"))
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(t("recall"))
        ax.set_ylabel(t("precision"))
        ax.legend(fontsize=8, loc="lower left")
    return chart


def _chart_rules(stats: pd.DataFrame, t: ChartText, modes: Mapping[str, str], top: int = 25) -> Chart:
    shown = stats.head(top).iloc[::-1]
    height = max(3.0, 0.28 * len(shown) + 1.2)
    chart = Chart(t(f"Rule hits and precision (top {len(shown)} rules by hits)", "规则命中数与精确率"),
                  size=(10.0, height), text=t)
    with chart as fig:
        left, right = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
        names = [t.safe(str(i)) for i in shown.index]
        colours = [GREY if modes.get(str(i)) == "shadow" else BLUE for i in shown.index]
        y = np.arange(len(shown))
        left.barh(y, shown["hits"].to_numpy(), color=colours)
        left.set_yticks(y, names, fontsize=7)
        left.set_xscale("log")
        left.set_xlabel(t("hits (log scale)"))
        precision = shown["precision"].fillna(0).to_numpy(dtype=np.float64)
        right.barh(y, precision, color=[GREEN if p >= 0.5 else ORANGE if p >= 0.1 else RED for p in precision])
        right.set_xlim(0, 1)
        right.set_xlabel(t("precision (share of hits that are fraud)"))
        left.legend(handles=[Patch(color=BLUE, label=t("active")), Patch(color=GREY, label=t("shadow"))],
                    fontsize=8, loc="lower right")
    return chart


def _chart_overlap(scores: pd.DataFrame, stats: pd.DataFrame, t: ChartText, top: int = 15) -> Chart | None:
    rules = [str(r) for r in stats.head(top).index]
    if len(rules) < 2:
        return None
    with_hits = scores.loc[scores["hits"] != "", "hits"].str.split(";")
    matrix = np.zeros((len(with_hits), len(rules)), dtype=np.float64)
    index = {rule: j for j, rule in enumerate(rules)}
    for i, ids in enumerate(with_hits.tolist()):
        for rule in ids:
            j = index.get(rule)
            if j is not None:
                matrix[i, j] = 1.0
    inter = matrix.T @ matrix
    counts = np.diag(inter)
    union = counts[:, None] + counts[None, :] - inter
    jaccard = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    np.fill_diagonal(jaccard, np.nan)  # a rule with itself is 1 by definition; leave it blank
    chart = Chart(t("Overlap between rules (Jaccard of hit sets)", "规则重叠度(命中集合Jaccard系数)"),
                  size=(8.0, 7.0), text=t)
    with chart as fig:
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(jaccard), cmap="Blues", vmin=0, vmax=1)
        labels = [t.safe(shorten(r, 26)) for r in rules]
        ax.set_xticks(range(len(rules)), labels, rotation=70, ha="right", fontsize=7)
        ax.set_yticks(range(len(rules)), labels, fontsize=7)
        for i in range(len(rules)):
            for j in range(len(rules)):
                if i != j and jaccard[i, j] >= 0.05:
                    ax.text(j, i, f"{jaccard[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if jaccard[i, j] > 0.6 else "black")
        fig.colorbar(image, ax=ax, shrink=0.7)
    return chart


def _summary_rows(scores: pd.DataFrame, report: Mapping[str, Any] | None) -> list[tuple[str, list[object]]]:
    labels = (scores["label"] == 1).to_numpy(dtype=np.int64) if scores["label"].notna().any() else None
    runs = [("live", "risk", "action")]
    if "draft_risk" in scores.columns:
        runs.append(("draft", "draft_risk", "draft_action"))
    out = []
    for name, risk, action in runs:
        from_report = (report or {}).get(name, {}).get("hybrid") if report else None
        metrics = from_report or {
            **ranking_metrics(scores[risk].to_numpy(dtype=np.float64), labels),
            **flagged_metrics(scores[action].isin(_ALERT_ACTIONS).to_numpy(), labels),
        }
        out.append((name, [metrics.get(k) for k in ("auc", "average_precision", "alerts", "alert_rate",
                                                      "precision", "recall")]))
    return out


def backtest_report(scores: pd.DataFrame, report: Mapping[str, Any] | None = None, *, title: str = "") -> str:
    """The HTML page of a backtest: ``scores`` as read by ``read_scores``, ``report`` the --report-json (optional)."""
    if scores.empty:
        raise ReportError("the scores file has no rows; run the backtest over a period with transactions")
    t = chart_text()
    draft = "draft_risk" in scores.columns
    labelled = bool(scores["label"].notna().any())
    sections: list[_Section] = []
    data = (report or {}).get("data", {})
    live_info = (report or {}).get("live", {})
    kpis = [("transactions 交易笔数", len(scores)),
            ("alerts 预警", int(scores["action"].isin(_ALERT_ACTIONS).sum())),
            ("mean risk 平均风险分", float(scores["risk"].mean()))]
    if labelled:
        kpis.append(("fraud labels 欺诈标签", int((scores["label"] == 1).sum())))
    if report and report.get("throughput"):
        kpis.append(("txn/s replayed 回放速度", report["throughput"].get("rows_per_second")))
    start, end = scores["event_time"].min(), scores["event_time"].max()
    header = _kpis(kpis) + _table(
        ["", "value"],
        [("period 时间范围", f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"),
         ("data 数据", data.get("source", "")),
         ("rule set 规则集", live_info.get("ruleset_version", "")),
         ("draft rule set 草案规则集", (report or {}).get("draft", {}).get("ruleset_version", "") if draft else "–"),
         ("model 模型", (report or {}).get("model_version", "")),
         ("label delay 标签延迟 (days)", data.get("label_delay_days", ""))],
    )
    sections.append(_Section("概览", "Overview", header))
    summary = _summary_rows(scores, report)
    body = _table(["rule set", "AUC", "average precision", "alerts", "alert rate", "precision", "recall"],
                  [(name, *values) for name, values in summary])
    if report:
        extra = []
        for name in ("live", "draft"):
            part = report.get(name)
            if not part:
                continue
            for kind in ("model_only", "rules_only"):
                m = part.get(kind)
                if m:
                    extra.append((f"{name}: {kind.replace('_', ' ')}", m.get("auc"), m.get("average_precision"),
                                  m.get("alerts"), m.get("precision"), m.get("recall")))
        if extra:
            body += _table(["component", "AUC", "average precision", "alerts", "precision", "recall"], extra)
    body += ('<p class="muted">precision/recall at the REVIEW threshold: a transaction counts as alerted when its '
             "action is REVIEW, CHALLENGE or BLOCK (per-channel thresholds and rule action floors applied).</p>")
    sections.append(_Section("混合评分效果", "Hybrid score", body))

    charts = [_chart_score_over_time(scores, t, draft), _chart_actions_over_time(scores, t),
              _chart_risk_distribution(scores, t)]
    if labelled:
        charts.append(_chart_pr(scores, t))
    sections.append(_Section("走势与分布", "Over time and distribution", "".join(_figure(c) for c in charts)))

    stats = _rule_stats(scores, "hits")
    rule_rows = {r["id"]: r for r in live_info.get("rules", [])}
    modes = {rid: r.get("mode", "") for rid, r in rule_rows.items()}
    rule_body = _figure(_chart_rules(stats, t, modes)) if not stats.empty else "<p>No rule hit. 无规则命中。</p>"
    overlap = _chart_overlap(scores, stats, t) if not stats.empty else None
    if overlap is not None:
        rule_body += _figure(overlap)
    table_rows = []
    for rid, row in stats.iterrows():
        info = rule_rows.get(str(rid), {})
        table_rows.append((rid, info.get("typology", ""), info.get("mode", ""), int(row["hits"]),
                           None if pd.isna(row["true_positives"]) else int(row["true_positives"]),
                           None if pd.isna(row["precision"]) else float(row["precision"]),
                           info.get("recall"), info.get("unique_hits")))
    rule_body += _table(["rule", "typology", "mode", "hits", "true positives", "precision", "recall", "unique hits"],
                        table_rows, left=3)
    pairs = live_info.get("overlap", [])
    if pairs:
        rule_body += "<p>Most overlapping pairs 重叠最多的规则对:</p>" + _table(
            ["rule A", "rule B", "Jaccard", "both", "A hits", "B hits"],
            [(p["a"], p["b"], p["jaccard"], p["both"], p["a_hits"], p["b_hits"]) for p in pairs], left=2)
    sections.append(_Section("规则命中与精确率", "Rules: hits, precision, overlap", rule_body))

    typologies = live_info.get("typologies", {})
    if typologies:
        sections.append(_Section("各类型召回率", "Recall by typology", _table(
            ["typology", "fraud rows", "recall (alerted)"],
            [(name, v["fraud_rows"], v["recall"]) for name, v in typologies.items()])))
    if draft:
        sections.append(_Section("草案与现行规则对比", "Draft vs live rules", _compare_section(scores, report, t)))
    return _page(title or "回测报告 Backtest report", f"{len(scores):,} transactions scored", sections)


def _compare_section(scores: pd.DataFrame, report: Mapping[str, Any] | None, t: ChartText) -> str:
    body = ""
    compare = (report or {}).get("compare")
    if compare:
        body += _table(["", "value"], [
            ("rules added 新增规则", ", ".join(compare.get("added", [])) or "–"),
            ("rules removed 删除规则", ", ".join(compare.get("removed", [])) or "–"),
            ("rules changed 修改规则", ", ".join(compare.get("changed", [])) or "–"),
            ("alerts live / draft", f"{compare['alerts_live']:,} / {compare['alerts_draft']:,}"),
            ("alerts only live / only draft", f"{compare['alerts_only_live']:,} / {compare['alerts_only_draft']:,}"),
            ("fraud caught only live / only draft",
             f"{compare.get('fraud_caught_only_live', '–')} / {compare.get('fraud_caught_only_draft', '–')}"),
        ])
    live = _rule_stats(scores, "hits")
    draft = _rule_stats(scores, "draft_hits")
    joined = live.add_suffix("_live").join(draft.add_suffix("_draft"), how="outer")
    joined = joined.fillna({"hits_live": 0, "hits_draft": 0})
    changed = joined[(joined["hits_live"] != joined["hits_draft"])]
    changed = changed.reindex((changed["hits_live"] - changed["hits_draft"]).abs().sort_values(ascending=False).index)
    if not changed.empty:
        shown = changed.head(20).iloc[::-1]
        chart = Chart(t("Rules whose hits change in the draft", "草案中命中数变化的规则"),
                      size=(9.0, max(3.0, 0.3 * len(shown) + 1.2)), text=t)
        with chart as fig:
            ax = fig.add_subplot()
            y = np.arange(len(shown))
            ax.barh(y - 0.2, shown["hits_live"].to_numpy(), height=0.4, color=BLUE, label=t("live"))
            ax.barh(y + 0.2, shown["hits_draft"].to_numpy(), height=0.4, color=PURPLE, label=t("draft"))
            ax.set_yticks(y, [t.safe(str(i)) for i in shown.index], fontsize=7)
            ax.set_xlabel(t("hits"))
            ax.legend(fontsize=8)
        body += _figure(chart)
        body += _table(["rule", "hits live", "hits draft", "precision live", "precision draft"],
                       [(rid, int(r["hits_live"]), int(r["hits_draft"]),
                         None if pd.isna(r.get("precision_live")) else float(r["precision_live"]),
                         None if pd.isna(r.get("precision_draft")) else float(r["precision_draft"]))
                        for rid, r in changed.iterrows()])
    else:
        body += "<p>The draft hits exactly the same rows as the live rules. 草案与现行规则命中完全相同。</p>"
    return body


# -- account investigation --------------------------------------------------------------------------------------
def _account_rows(transactions: pd.DataFrame, account_id: str, config: FeatureConfig) -> pd.DataFrame:
    if "account_id" not in transactions.columns:
        raise ReportError("the transaction data has no account_id column; load it with --mapping")
    own = transactions.loc[transactions["account_id"].astype(str) == account_id].copy()
    if own.empty:
        raise ReportError(f"account {account_id!r} has no transaction in the data; check the id (exact match)")
    own = own.sort_values("event_time", kind="stable").reset_index(drop=True)
    records = encode_frame(own, config)
    own["amount_cny"] = records["amount_fen"] / 100.0
    own["direction"] = np.where(own["type"].astype(str).isin(_OUTFLOW_TYPES), "out", "in")
    own["event_time"] = pd.to_datetime(own["event_time"], utc=True)
    own["local_time"] = own["event_time"] + pd.Timedelta(hours=config.utc_offset_hours)
    if "counterparty_id" not in own.columns:
        own["counterparty_id"] = ""
    own["counterparty_id"] = own["counterparty_id"].fillna("").astype(str)
    own["is_fraud"] = (pd.to_numeric(own["is_fraud"], errors="coerce").fillna(0).astype(int)
                       if "is_fraud" in own.columns else 0)
    return own


def _join_decisions(own: pd.DataFrame, decisions: pd.DataFrame | None, account_id: str) -> pd.DataFrame:
    own["risk"] = np.nan
    own["action"] = ""
    own["rule_hits"] = ""
    if decisions is None or decisions.empty:
        return own
    key = f"{stable_key(account_id):016x}"
    mine = decisions.loc[decisions["account_key"] == key]
    if "dry_run" in mine.columns:
        mine = mine.loc[~mine["dry_run"].astype(bool)]
    mine = mine.drop_duplicates("transaction_id", keep="last").set_index("transaction_id")
    if "transaction_id" in own.columns:
        ids = own["transaction_id"].astype(str)
        own["risk"] = ids.map(mine["risk"]).astype(float)
        own["action"] = ids.map(mine["action"]).fillna("")
        own["rule_hits"] = ids.map(mine["rule_hits"].map(lambda v: ";".join(map(str, v)))).fillna("")
    return own


def _chart_timeline(own: pd.DataFrame, t: ChartText) -> Chart:
    chart = Chart(t("Transaction timeline", "交易时间线"), text=t)
    with chart as fig:
        ax = fig.add_subplot()
        for direction, colour, label in (("in", GREEN, t("inflow")), ("out", RED, t("outflow"))):
            rows = own.loc[own["direction"] == direction]
            ax.scatter(rows["local_time"].dt.tz_localize(None), rows["amount_cny"], s=18, color=colour, alpha=0.7,
                       label=label)
        flagged = own.loc[own["action"].isin(_ALERT_ACTIONS)]
        if not flagged.empty:
            ax.scatter(flagged["local_time"].dt.tz_localize(None), flagged["amount_cny"], s=90, facecolors="none",
                       edgecolors="black", linewidths=1.2, label=t("alerted (REVIEW or above)"))
        fraud = own.loc[own["is_fraud"] == 1]
        if not fraud.empty:
            ax.scatter(fraud["local_time"].dt.tz_localize(None), fraud["amount_cny"], marker="x", s=60,
                       color=PURPLE, label=t("labelled fraud"))
        ax.set_yscale("log")
        ax.set_ylabel(t("amount (CNY, log scale)"))
        ax.set_xlabel(t("local time (UTC+8)"))
        handles = ax.get_legend_handles_labels()[0]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
        fig.autofmt_xdate()
    return chart


def _chart_daily_flows(own: pd.DataFrame, t: ChartText) -> Chart:
    day = own["local_time"].dt.tz_localize(None).dt.floor("D")
    flows = own.assign(day=day).pivot_table(index="day", columns="direction", values="amount_cny", aggfunc="sum",
                                            fill_value=0.0)
    flows = flows.reindex(columns=["in", "out"], fill_value=0.0)
    flows = flows.reindex(pd.date_range(flows.index.min(), flows.index.max(), freq="D"), fill_value=0.0)
    chart = Chart(t("Inflow and outflow by day", "每日资金流入流出"), text=t)
    with chart as fig:
        ax = fig.add_subplot()
        ax.bar(flows.index, flows["in"].to_numpy(), color=GREEN, label=t("inflow"), width=0.8)
        ax.bar(flows.index, -flows["out"].to_numpy(), color=RED, label=t("outflow"), width=0.8)
        net = (flows["in"] - flows["out"]).cumsum()
        ax.plot(flows.index, net.to_numpy(), color=BLUE, label=t("cumulative net flow"))
        ax.axhline(0, color=GREY, linewidth=0.8)
        ax.set_ylabel(t("CNY"))
        ax.legend(fontsize=8, loc="upper left")
        fig.autofmt_xdate()
    return chart


def _counterparties(own: pd.DataFrame) -> pd.DataFrame:
    rows = own.loc[own["counterparty_id"] != ""]
    table = rows.pivot_table(index="counterparty_id", columns="direction", values="amount_cny", aggfunc="sum",
                             fill_value=0.0).reindex(columns=["in", "out"], fill_value=0.0)
    table["count"] = rows.groupby("counterparty_id").size()
    table["fraud"] = rows.groupby("counterparty_id")["is_fraud"].max()
    table["alerts"] = rows.assign(a=rows["action"].isin(_ALERT_ACTIONS)).groupby("counterparty_id")["a"].sum()
    table["total"] = table["in"] + table["out"]
    return table.sort_values("total", ascending=False)


def _chart_network(account_id: str, table: pd.DataFrame, t: ChartText) -> Chart:
    shown = table.head(_MAX_NETWORK)
    rest = table.iloc[_MAX_NETWORK:]
    chart = Chart(t(f"Counterparties of the account (top {len(shown)} by amount)", "交易对手网络"),
                  size=(9.0, 8.0), text=t)
    with chart as fig:
        ax = fig.add_subplot()
        ax.set_aspect("equal")
        ax.axis("off")
        positions = circle_positions(len(shown), radius=1.0)
        widths = scaled_widths(shown["total"].to_numpy())
        counts = shown["count"].to_numpy(dtype=np.float64)
        sizes = 60 + 340 * np.sqrt(counts / max(counts.max(initial=1.0), 1.0))
        for (cp, row), (x, y), width, size in zip(shown.iterrows(), positions, widths, sizes, strict=True):
            if row["in"] > 0 and row["out"] > 0:
                colour = PURPLE
            elif row["out"] > 0:
                colour = RED
            else:
                colour = GREEN
            ax.plot([0, x], [0, y], color=colour, linewidth=width, alpha=0.55, solid_capstyle="round", zorder=1)
            edge = "black" if row["fraud"] else "white"
            ax.scatter([x], [y], s=size, color=SKY if not row["alerts"] else ORANGE, edgecolors=edge,
                       linewidths=2.5 if row["fraud"] else 1.0, zorder=2)
            label = f"{t.safe(shorten(str(cp)))}\n¥{row['total']:,.0f} · {int(row['count'])} txn"
            align = "left" if x > 0.2 else "right" if x < -0.2 else "center"
            ax.annotate(label, (x, y), xytext=(x * 1.13 + np.sign(x) * 0.04 * (align != "center"), y * 1.15),
                        ha=align, va="center", fontsize=7)
        ax.scatter([0], [0], s=900, color=BLUE, zorder=3)
        ax.annotate(t.safe(shorten(account_id, 22)), (0, 0), xytext=(0, -0.16), ha="center", fontsize=9,
                    fontweight="bold")
        ax.set_xlim(-1.75, 1.75)
        ax.set_ylim(-1.35, 1.35)
        handles = [
            Line2D([0], [0], color=RED, linewidth=3, label=t("money out to it")),
            Line2D([0], [0], color=GREEN, linewidth=3, label=t("money in from it")),
            Line2D([0], [0], color=PURPLE, linewidth=3, label=t("both directions")),
            Line2D([0], [0], marker="o", color="white", markerfacecolor=ORANGE, markersize=9,
                   label=t("with alerted transactions")),
            Line2D([0], [0], marker="o", color="white", markerfacecolor=SKY, markeredgecolor="black",
                   markeredgewidth=2, markersize=9, label=t("with labelled fraud")),
        ]
        if len(rest):
            handles.append(Line2D([0], [0], color="white",
                                  label=t(f"+{len(rest)} more counterparties, ¥{rest['total'].sum():,.0f}")))
        ax.legend(handles=handles, fontsize=7, loc="lower left", frameon=False)
    return chart


def _chart_hours(own: pd.DataFrame, t: ChartText) -> Chart:
    hour = own["local_time"].dt.hour
    sums = own.assign(hour=hour).pivot_table(index="hour", columns="direction", values="amount_cny", aggfunc="sum",
                                             fill_value=0.0).reindex(index=range(24), columns=["in", "out"],
                                                                     fill_value=0.0)
    counts = hour.value_counts().reindex(range(24), fill_value=0)
    chart = Chart(t("Amounts by hour of day (local time)", "各时段交易金额(北京时间)"), text=t)
    with chart as fig:
        ax = fig.add_subplot()
        x = np.arange(24)
        ax.bar(x, sums["in"].to_numpy(), color=GREEN, label=t("inflow"))
        ax.bar(x, sums["out"].to_numpy(), bottom=sums["in"].to_numpy(), color=RED, label=t("outflow"))
        ax.axvspan(-0.5, 5.5, color=GREY, alpha=0.12, label=t("night (00-06)"))
        ax.set_xticks(x)
        ax.set_xlabel(t("hour of day"))
        ax.set_ylabel(t("CNY"))
        right = ax.twinx()
        right.plot(x, counts.to_numpy(), color=BLUE, marker="o", markersize=3, label=t("transactions"))
        right.set_ylabel(t("transactions"))
        right.set_ylim(bottom=0)
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=8, loc="upper left")
    return chart


def _chart_risk(own: pd.DataFrame, t: ChartText) -> Chart | None:
    scored = own.loc[own["risk"].notna()]
    if scored.empty:
        return None
    chart = Chart(t("Risk score of each transaction", "每笔交易风险分"), text=t)
    with chart as fig:
        ax = fig.add_subplot()
        times = scored["local_time"].dt.tz_localize(None)
        ax.plot(times, scored["risk"], color=GREY, linewidth=0.6, alpha=0.6)
        colours = [_ACTION_COLOURS.get(a, BLUE) for a in scored["action"]]
        ax.scatter(times, scored["risk"], c=colours, s=16, zorder=2)
        ax.set_ylim(0, 1000)
        ax.set_ylabel(t("risk score"))
        ax.legend(handles=[Line2D([0], [0], marker="o", color="white", markerfacecolor=c, markersize=7, label=a)
                           for a, c in (("ALLOW", BLUE), *_ACTION_COLOURS.items())], fontsize=8, loc="upper left")
        fig.autofmt_xdate()
    return chart


def investigation_report(
    account_id: str,
    transactions: pd.DataFrame,
    *,
    decisions: pd.DataFrame | None = None,
    alerts: Sequence[Alert] = (),
    config: FeatureConfig | None = None,
) -> str:
    """The HTML investigation page of one account from the transaction data (canonical columns), and optionally
    its logged decisions (``read_decisions``) and alerts."""
    config = config or FeatureConfig()
    t = chart_text()
    own = _join_decisions(_account_rows(transactions, account_id, config), decisions, account_id)
    table = _counterparties(own)
    inflow = float(own.loc[own["direction"] == "in", "amount_cny"].sum())
    outflow = float(own.loc[own["direction"] == "out", "amount_cny"].sum())
    first, last = own["local_time"].iloc[0], own["local_time"].iloc[-1]
    kpis = [("transactions 交易笔数", len(own)), ("inflow CNY 流入", inflow), ("outflow CNY 流出", outflow),
            ("counterparties 交易对手", len(table)),
            ("alerted 预警笔数", int(own["action"].isin(_ALERT_ACTIONS).sum())),
            ("fraud labels 欺诈标签", int(own["is_fraud"].sum()))]
    customer = [(k, own[c].iloc[-1]) for k, c in (("customer 客户", "customer_id"), ("age 年龄", "customer_age"),
                                                  ("risk level 风险等级", "risk_level")) if c in own.columns]
    overview = _kpis(kpis) + _table(["", "value"], [
        ("account 账户", account_id), ("account key 账户键", f"{stable_key(account_id):016x}"),
        ("period 时间范围 (UTC+8)", f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M}"), *customer])
    sections = [_Section("概览", "Overview", overview)]
    flows = [_chart_timeline(own, t)]
    risk_chart = _chart_risk(own, t)
    if risk_chart is not None:
        flows.append(risk_chart)
    flows += [_chart_daily_flows(own, t), _chart_hours(own, t)]
    sections.append(_Section("交易与资金流", "Transactions and money flows", "".join(_figure(c) for c in flows)))
    network = (_figure(_chart_network(account_id, table, t)) if not table.empty
               else "<p>No counterparty. 无交易对手。</p>")
    network += _table(["counterparty", "transactions", "in CNY", "out CNY", "alerted", "labelled fraud"],
                      [(cp, int(r["count"]), float(r["in"]), float(r["out"]), int(r["alerts"]), bool(r["fraud"]))
                       for cp, r in table.head(40).iterrows()])
    sections.append(_Section("交易对手网络", "Counterparty network", network))
    if alerts:
        sections.append(_Section("预警", "Alerts", _table(
            ["alert", "transaction", "event time", "action", "risk", "state", "outcome", "rules"],
            [(a.alert_id, a.transaction_id, f"{a.event_time:%Y-%m-%d %H:%M}", a.action, a.risk, a.state,
              a.outcome or "–", ", ".join(a.rule_hits)) for a in alerts], left=3)))
    columns = ["transaction_id", "local_time", "type", "channel", "counterparty_id", "amount_cny", "risk", "action",
               "rule_hits", "is_fraud"]
    present = [c for c in columns if c in own.columns]
    riskiest = own.sort_values(["risk", "amount_cny"], ascending=False, na_position="last").head(20)
    recent = own.tail(50).iloc[::-1]

    def rows(frame: pd.DataFrame) -> list[list[object]]:
        out = []
        for _, r in frame[present].iterrows():
            out.append([f"{v:%Y-%m-%d %H:%M:%S}" if isinstance(v, pd.Timestamp) else
                        (None if isinstance(v, float) and np.isnan(v) else v) for v in r.tolist()])
        return out

    sections.append(_Section("最高风险交易", "Highest-risk transactions", _table(present, rows(riskiest), left=5)))
    sections.append(_Section("最近交易", "Latest transactions", _table(present, rows(recent), left=5)))
    return _page(f"账户调查 Account investigation: {account_id}", f"{len(own):,} transactions of the account", sections)

