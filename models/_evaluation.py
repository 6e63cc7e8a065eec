"""Evaluation of rules alone, the model alone and the hybrid score on a held-out time period.

Metrics: ROC AUC, average precision, and recall (overall and per typology) when alerting a
fixed share of transactions (0.5% by default). Alerting exactly ``k = rate * n`` rows with tied
scores at the cut is resolved by expected value: rows tied at the cut count with the fraction
of them that fits, which is what random tie-breaking gives on average, so coarse scores (rules)
are neither favoured nor penalised by an arbitrary order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models._hybrid import combine_scores

__all__ = ["alert_weights", "evaluate_scores", "format_report", "hybrid_report"]


def alert_weights(scores: np.ndarray, rate: float) -> tuple[np.ndarray, float]:
    """Per-row alert weight (1 above the cut, a fraction at it, 0 below) for alerting ``rate`` of rows; the cut."""
    n = scores.size
    k = min(n, max(1, math.ceil(rate * n))) if n else 0
    if k == 0:
        return np.zeros(0), 0.0
    cut = float(np.partition(scores, n - k)[n - k])
    above = scores > cut
    tied = scores == cut
    room = k - int(above.sum())
    weights = above.astype(np.float64)
    weights[tied] = room / int(tied.sum())
    return weights, cut


def evaluate_scores(scores: np.ndarray, y: np.ndarray, typology: np.ndarray, rate: float) -> dict[str, Any]:
    """AUC, average precision, and precision / recall at the alert rate (overall and per typology)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    both = 0 < y.sum() < y.size
    weights, cut = alert_weights(scores, rate)
    caught = float((weights * y).sum())
    per_typology = {}
    for name in sorted(set(typology[y].tolist())):
        rows = typology == name
        per_typology[str(name)] = round(float(weights[rows].sum() / rows.sum()), 4)
    return {
        "auc": round(float(roc_auc_score(y, scores)), 4) if both else None,
        "average_precision": round(float(average_precision_score(y, scores)), 4) if both else None,
        "alert_rate": rate,
        "alert_cut": cut,
        "alerts": round(float(weights.sum()), 1),
        "precision_at_rate": round(caught / float(weights.sum()), 4) if weights.sum() else None,
        "recall_at_rate": round(caught / float(y.sum()), 4) if y.sum() else None,
        "recall_by_typology": per_typology,
    }


def hybrid_report(
    p_model: np.ndarray,
    hits: np.ndarray | None,
    weights: np.ndarray | None,
    active: np.ndarray | None,
    y: np.ndarray,
    typology: np.ndarray,
    rate: float,
) -> dict[str, Any]:
    """Metrics of rules alone, model alone and the hybrid; rules entries are None when no rule set was given."""
    report: dict[str, Any] = {
        "rows": int(y.size),
        "fraud_rows": int(np.asarray(y).sum()),
        "model": evaluate_scores(p_model, y, typology, rate),
    }
    if hits is None or weights is None or active is None:
        report["rules"] = None
        report["hybrid"] = None
        return report
    rules_only, _, _ = combine_scores(np.zeros_like(p_model), hits, weights, active)
    hybrid, _, _ = combine_scores(p_model, hits, weights, active)
    report["rules"] = evaluate_scores(rules_only.astype(np.float64), y, typology, rate)
    report["hybrid"] = evaluate_scores(hybrid.astype(np.float64), y, typology, rate)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table for the terminal."""
    systems = [s for s in ("rules", "model", "hybrid") if report.get(s)]
    lines = [
        f"held-out period: {report.get('period', '')}  rows {report['rows']:,}  fraud rows {report['fraud_rows']:,}",
        f"alert rate {report['model']['alert_rate']:.2%} of transactions",
        "",
        f"{'':28}" + "".join(f"{s:>12}" for s in systems),
    ]

    def row(label: str, key: str, fmt: str = "{:.4f}") -> None:
        values = [report[s].get(key) for s in systems]
        lines.append(f"{label:28}" + "".join(f"{fmt.format(v) if v is not None else '-':>12}" for v in values))

    row("ROC AUC", "auc")
    row("average precision", "average_precision")
    row("precision at alert rate", "precision_at_rate")
    row("recall at alert rate", "recall_at_rate")
    typologies = sorted({t for s in systems for t in report[s]["recall_by_typology"]})
    lines.append("recall by typology:")
    for name in typologies:
        values = [report[s]["recall_by_typology"].get(name) for s in systems]
        lines.append(f"  {name:26}" + "".join(f"{v:>12.3f}" if v is not None else f"{'-':>12}" for v in values))
    if not report.get("rules"):
        lines.append("(no rule set could be loaded: rules and hybrid columns are missing)")
    return "\n".join(lines)
