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

__all__ = ["alert_weights", "evaluate_scores", "fit_rule_weights", "format_report", "hybrid_report", "rule_stats"]


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


def fit_rule_weights(
    p_model: np.ndarray, hits: np.ndarray, y: np.ndarray, active: np.ndarray, l2: float = 1e-5
) -> np.ndarray:
    """Rule weights (0..1000) that make the noisy-OR hybrid most likely on labelled rows, the model held fixed.

    With ``L_i = -log(1 - w_i/1000)`` the hybrid is ``1 - exp(-(L_p + sum_i hit_i L_i))``; the negative
    log-likelihood is convex in ``L`` (>= 0), so L-BFGS-B finds the optimum. A weight is the evidence a
    rule adds *beyond the model*: a rule the model already accounts for gets a weight near 0.
    Only rows with at least one active hit depend on the weights. Shadow rules get 0.
    """
    from scipy.optimize import minimize

    hit = (np.asarray(hits) != 0) & np.asarray(active, dtype=bool)[None, :]
    r = hit.shape[1]
    weights = np.zeros(r)
    used = np.flatnonzero(hit.any(axis=0))  # a rule that never hits has no evidence: weight 0
    rows = hit.any(axis=1)
    if not used.size:
        return weights
    # Sums without BLAS (hits are 0/1): the result must not depend on how many threads BLAS picks.
    h = hit[rows][:, used].astype(np.float64)
    yr = np.asarray(y)[rows].astype(np.float64)
    offset = -np.log1p(-np.clip(np.asarray(p_model, dtype=np.float64)[rows], 0.0, 1 - 1e-12))
    n = float(yr.size)

    def objective(big_l: np.ndarray) -> tuple[float, np.ndarray]:
        s = np.maximum(offset + (h * big_l[None, :]).sum(axis=1), 1e-12)
        nll = float(np.sum(-yr * np.log(-np.expm1(-s)) + (1 - yr) * s)) / n + l2 * float(np.sum(big_l**2))
        grad = (h * ((1 - yr) - yr / np.expm1(s))[:, None]).sum(axis=0) / n + 2 * l2 * big_l
        return nll, grad

    cap = -np.log(1 - 0.999)
    result = minimize(objective, np.full(used.size, 0.05), jac=True, method="L-BFGS-B",
                      bounds=[(0.0, cap)] * used.size, options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 2000})
    weights[used] = np.round(1000 * -np.expm1(-result.x), 1)
    return weights


def rule_stats(hits: np.ndarray, y: np.ndarray, rules: Any, fitted: np.ndarray) -> list[dict[str, Any]]:
    """Per rule on labelled rows: hits, precision, the pack's weight and the fitted weight."""
    hit = np.asarray(hits) != 0
    y = np.asarray(y).astype(bool)
    out = []
    for i, rule in enumerate(rules.rules):
        n = int(hit[:, i].sum())
        k = int((hit[:, i] & y).sum())
        out.append({"id": rule.id, "typology": rule.typology, "active": bool(rules.active[i]),
                    "weight": float(rules.weights[i]), "hits": n, "fraud_hits": k,
                    "precision": round(k / n, 4) if n else None, "fitted_weight": float(fitted[i])})
    return out


def hybrid_report(
    p_model: np.ndarray,
    hits: np.ndarray | None,
    weights: np.ndarray | None,
    active: np.ndarray | None,
    y: np.ndarray,
    typology: np.ndarray,
    rate: float,
    fitted_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of rules alone, model alone and the hybrid; rules entries are None when no rule set was given.

    With ``fitted_weights`` also ``hybrid_fitted``: the same formula with weights fitted on earlier rows.
    """
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
    if fitted_weights is not None:
        refit, _, _ = combine_scores(p_model, hits, fitted_weights, active)
        report["hybrid_fitted"] = evaluate_scores(refit.astype(np.float64), y, typology, rate)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table for the terminal."""
    systems = [s for s in ("rules", "model", "hybrid", "hybrid_fitted") if report.get(s)]
    lines = [
        f"held-out period: {report.get('period', '')}  rows {report['rows']:,}  fraud rows {report['fraud_rows']:,}",
        f"alert rate {report['model']['alert_rate']:.2%} of transactions",
        "",
        f"{'':28}" + "".join(f"{s.replace('hybrid_fitted', 'hybrid*'):>12}" for s in systems),
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
    if report.get("hybrid_fitted"):
        lines.append("hybrid*: the same noisy-OR with rule weights fitted on the training and validation periods "
                     "given the model (see rule_stats in the report for the suggested weights)")
    return "\n".join(lines)
