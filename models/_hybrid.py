"""The hybrid score: rule hits and the calibrated model probability combined into one 0..1000 risk score.

Noisy-OR: every active rule that hits is an independent piece of evidence with probability
``w_i / 1000``, the model another with probability ``p``; the score is the probability that at
least one of them is right, on the 0..1000 scale::

    risk = 1000 * (1 - (1 - p) * prod_i (1 - w_i / 1000))      over active hits only

Writing ``L_x = -log(1 - x)``, ``1 - risk/1000 = exp(-(L_p + sum_i L_i))``: the evidence adds up
in L-space, so each term's share of the score is ``L_term / L_total``; the points of a term
are ``risk * L_term / L_total`` and all points add up to ``risk``.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

__all__ = ["HybridScores", "combine_scores", "hit_points", "hybrid_scores"]

# A weight or probability of exactly 1 would make L infinite; cap evidence just below certainty.
_CAP = 1.0 - 1e-12


class HybridScores(NamedTuple):
    """The hybrid score of a batch, with the rules' points kept factored: a hit of rule j in row i is worth
    ``evidence[j] * share[i]`` points. A batch's (n, R) matrix of points is mostly zeros and only the rows shown to
    people need it: ``hit_points`` writes it for those rows (``rule_points`` for the whole batch), with the same
    float64 products as ``combine_scores``."""

    risk: np.ndarray  # (n,) int32 0..1000
    model_points: np.ndarray  # (n,) float64
    share: np.ndarray  # (n,) float64: points per unit of evidence (risk / L_total; 0 when nothing counts)
    evidence: np.ndarray  # (R,) float64: L_j of each rule, 0 for shadow rules

    def rule_points(self, hits: np.ndarray) -> np.ndarray:
        """(n, R) points of each rule hit in this batch's hit matrix ``hits``."""
        return hit_points(hits, self.evidence, self.share)


def hit_points(hits: np.ndarray, evidence: np.ndarray, share: np.ndarray | float) -> np.ndarray:
    """Points of the rule hits in ``hits`` (one row (R,) with its scalar ``share``, or rows (k, R) with theirs):
    ``evidence[j] * share`` where a rule hit, else 0 (shadow rules have no evidence)."""
    return np.where(np.asarray(hits) != 0, evidence * np.expand_dims(share, -1), 0.0)


def _check(p_model: np.ndarray, hits: np.ndarray, weights: np.ndarray, active: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    p = np.ascontiguousarray(p_model, dtype=np.float64).reshape(-1)
    hits = np.asarray(hits)
    n = p.size
    if hits.ndim != 2 or hits.shape[0] != n:
        raise ValueError(f"hits must have shape ({n}, R), got {hits.shape}")
    r = hits.shape[1]
    weights = np.ascontiguousarray(weights, dtype=np.float64).reshape(-1)
    active = np.ascontiguousarray(active, dtype=np.bool_).reshape(-1)
    if weights.shape != (r,) or active.shape != (r,):
        raise ValueError(f"weights and active must have shape ({r},), got {weights.shape} and {active.shape}")
    return p, np.ascontiguousarray(hits, dtype=np.uint8), weights, active


def hybrid_scores(p_model: np.ndarray, hits: np.ndarray, weights: np.ndarray, active: np.ndarray) -> HybridScores:
    """``combine_scores`` with the rules' points left factored (see ``HybridScores``): what the scoring pipeline
    keeps for every row, without an (n, R) matrix per batch."""
    p, hits, weights, active = _check(p_model, hits, weights, active)
    n = p.size
    risk = np.empty(n, dtype=np.int32)
    model_points = np.empty(n, dtype=np.float64)
    share = np.empty(n, dtype=np.float64)
    evidence = np.empty(weights.size, dtype=np.float64)
    _combine_kernel(p, hits, weights, active, risk, model_points, share, evidence)
    return HybridScores(risk=risk, model_points=model_points, share=share, evidence=evidence)


def combine_scores(
    p_model: np.ndarray, hits: np.ndarray, weights: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine model probabilities (n,) and rule hits (n, R) into (risk, rule_points, model_points).

    Returns ``risk`` int32 (n,), ``rule_points`` float64 (n, R) and ``model_points`` float64 (n,).

    ``weights`` (R,) are rule scores on the 0..1000 scale; ``active`` (R,) masks shadow rules,
    whose hits never count. ``risk`` is rounded to the nearest integer in 0..1000; the points of
    each row add up to its (integer) risk.
    """
    scores = hybrid_scores(p_model, hits, weights, active)
    return scores.risk, scores.rule_points(hits), scores.model_points


@numba.njit(nogil=True, cache=True)
def _combine_kernel(
    p: np.ndarray,
    hits: np.ndarray,
    weights: np.ndarray,
    active: np.ndarray,
    risk: np.ndarray,
    model_points: np.ndarray,
    share: np.ndarray,
    evidence: np.ndarray,
) -> None:  # pragma: no cover - compiled
    r = weights.shape[0]
    for j in range(r):
        w = min(max(weights[j] / 1000.0, 0.0), _CAP)
        evidence[j] = -np.log1p(-w) if active[j] else 0.0
    for i in range(p.shape[0]):
        model_l = -np.log1p(-min(max(p[i], 0.0), _CAP))
        total = model_l
        for j in range(r):
            if hits[i, j] != 0:
                total += evidence[j]
        score = min(max(np.rint(1000.0 * -np.expm1(-total)), 0.0), 1000.0)
        risk[i] = np.int32(score)
        share[i] = score / total if total > 0 else 0.0
        model_points[i] = model_l * share[i]
