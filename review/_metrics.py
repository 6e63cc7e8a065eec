"""Backtest metrics: ranking quality, alert precision and recall, per-rule statistics and rule overlap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["flagged_metrics", "overlap_pairs", "ranking_metrics", "rule_table", "typology_recall"]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def ranking_metrics(score: np.ndarray, labels: np.ndarray | None) -> dict[str, float | None]:
    """ROC AUC and average precision of ``score`` against 0/1 labels (None without both classes).

    One sort for both (the definitions of scikit-learn's roc_auc_score and average_precision_score, ties
    grouped at each distinct score), so a backtest of millions of rows pays for it once.
    """
    if labels is None:
        return {"auc": None, "average_precision": None}
    positive = np.asarray(labels) == 1
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return {"auc": None, "average_precision": None}
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    ranked_score, ranked_pos = np.asarray(score, dtype=np.float64)[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(ranked_score)), len(ranked_score) - 1]  # end of each group of ties
    tp = np.cumsum(ranked_pos)[last].astype(np.float64)
    fp = (last + 1) - tp
    tpr, fpr = np.r_[0.0, tp / n_pos], np.r_[0.0, fp / n_neg]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))  # trapezoids: ties count one half
    precision = tp / (last + 1)
    average_precision = float(np.sum(np.diff(tpr) * precision))
    return {"auc": round(auc, 6), "average_precision": round(average_precision, 6)}


def flagged_metrics(flagged: np.ndarray, labels: np.ndarray | None) -> dict[str, float | int | None]:
    """Alerts, alert rate, and (with labels) precision and recall of the flagged rows."""
    n = len(flagged)
    alerts = int(flagged.sum())
    out: dict[str, float | int | None] = {"alerts": alerts, "alert_rate": _ratio(alerts, n)}
    if labels is None:
        out.update(true_positives=None, precision=None, recall=None)
        return out
    tp = int((flagged & (labels == 1)).sum())
    out.update(true_positives=tp, precision=_ratio(tp, alerts), recall=_ratio(tp, int(labels.sum())))
    return out


def typology_recall(flagged: np.ndarray, labels: np.ndarray | None,
                    typology: np.ndarray | None) -> dict[str, dict[str, float | int | None]]:
    """Per labelled typology: fraud rows and the share of them flagged."""
    if labels is None or typology is None:
        return {}
    out: dict[str, dict[str, float | int | None]] = {}
    fraud = labels == 1
    names = typology[fraud].astype(str)
    caught = flagged[fraud]
    for name in sorted(set(names.tolist()) - {""}):
        rows = names == name
        total = int(rows.sum())
        out[name] = {"fraud_rows": total, "recall": _ratio(int((caught & rows).sum()), total)}
    return out


def rule_table(
    hits: np.ndarray,
    labels: np.ndarray | None,
    rules: Sequence[Any],
    typology: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One dict per rule: hits, hit rate, true positives, precision, recall, hits no other active rule made,
    and (with typology labels) the recall on the rule's own typology."""
    n = hits.shape[0]
    # Every statistic below only involves rows with at least one hit: work on those rows alone.
    hit_rows = np.flatnonzero(hits.any(axis=1))
    as_bool = hits[hit_rows].astype(bool)
    counts = as_bool.sum(axis=0)
    active = np.array([rule.mode == "active" for rule in rules], dtype=bool)
    active_counts = as_bool[:, active].sum(axis=1) if active.any() else np.zeros(len(hit_rows), dtype=np.int64)
    fraud_all = labels == 1 if labels is not None else None
    fraud = fraud_all[hit_rows] if fraud_all is not None else None
    fraud_total = int(fraud_all.sum()) if fraud_all is not None else 0
    tps = as_bool[fraud].sum(axis=0) if fraud is not None else None
    typology_hit = typology[hit_rows] if typology is not None else None
    own_totals: dict[str, int] = {}
    if typology is not None and fraud_all is not None:
        names, counts_by_name = np.unique(typology[fraud_all].astype(str), return_counts=True)
        own_totals = dict(zip(names.tolist(), counts_by_name.tolist(), strict=True))
    table: list[dict[str, Any]] = []
    for j, rule in enumerate(rules):
        col = as_bool[:, j]
        hit_count = int(counts[j])
        others = active_counts - (col & active[j])
        row: dict[str, Any] = {
            "id": rule.id,
            "typology": rule.typology,
            "mode": rule.mode,
            "score": float(rule.score),
            "hits": hit_count,
            "hit_rate": _ratio(hit_count, n),
            "unique_hits": int((col & (others == 0)).sum()),
            "true_positives": None,
            "precision": None,
            "recall": None,
            "typology_recall": None,
        }
        if tps is not None and fraud is not None:
            tp = int(tps[j])
            row.update(true_positives=tp, precision=_ratio(tp, hit_count), recall=_ratio(tp, fraud_total))
            if typology_hit is not None:
                own = fraud & (typology_hit == rule.typology)
                row["typology_recall"] = _ratio(int((col & own).sum()), own_totals.get(rule.typology, 0))
        table.append(row)
    return table


def overlap_pairs(hits: np.ndarray, rule_ids: Sequence[str], top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` rule pairs by Jaccard similarity of their hit sets (|A and B| / |A or B|), most similar first."""
    any_hit = hits.any(axis=1)
    h = hits[any_hit].astype(np.float64)  # float64 sums of 0/1 are exact far beyond any file's row count
    if not h.size:
        return []
    inter = np.rint(h.T @ h).astype(np.int64)
    counts = np.diag(inter).copy()
    union = counts[:, None] + counts[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        jaccard = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    i_idx, j_idx = np.triu_indices(len(rule_ids), k=1)
    values = jaccard[i_idx, j_idx]
    keep = inter[i_idx, j_idx] > 0
    order = np.argsort(-values[keep], kind="stable")[:top]
    pairs = []
    for k in order.tolist():
        i, j = int(i_idx[keep][k]), int(j_idx[keep][k])
        pairs.append({
            "a": rule_ids[i], "b": rule_ids[j], "jaccard": round(float(jaccard[i, j]), 6),
            "both": int(inter[i, j]), "a_hits": int(counts[i]), "b_hits": int(counts[j]),
        })
    return pairs
