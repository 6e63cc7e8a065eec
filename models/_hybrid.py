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

import numpy as np

__all__ = ["combine_scores"]

# A weight or probability of exactly 1 would make L infinite; cap evidence just below certainty.
_CAP = 1.0 - 1e-12


def combine_scores(
    p_model: np.ndarray, hits: np.ndarray, weights: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine model probabilities (n,) and rule hits (n, R) into (risk, rule_points, model_points).

    Returns ``risk`` int32 (n,), ``rule_points`` float64 (n, R) and ``model_points`` float64 (n,).

    ``weights`` (R,) are rule scores on the 0..1000 scale; ``active`` (R,) masks shadow rules,
    whose hits never count. ``risk`` is rounded to the nearest integer in 0..1000; the points of
    each row add up to its (integer) risk.
    """
    p = np.clip(np.asarray(p_model, dtype=np.float64).reshape(-1), 0.0, _CAP)
    hits = np.asarray(hits)
    n = p.size
    if hits.ndim != 2 or hits.shape[0] != n:
        raise ValueError(f"hits must have shape ({n}, R), got {hits.shape}")
    r = hits.shape[1]
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    active = np.asarray(active, dtype=bool).reshape(-1)
    if weights.shape != (r,) or active.shape != (r,):
        raise ValueError(f"weights and active must have shape ({r},), got {weights.shape} and {active.shape}")
    w = np.clip(weights / 1000.0, 0.0, _CAP) * active
    rule_l = (hits != 0) * (-np.log1p(-w))[None, :]  # (n, R)
    model_l = -np.log1p(-p)
    total = model_l + rule_l.sum(axis=1)
    risk = np.clip(np.rint(1000.0 * -np.expm1(-total)), 0, 1000).astype(np.int32)
    share = np.divide(risk, total, out=np.zeros(n, dtype=np.float64), where=total > 0)
    return risk, rule_l * share[:, None], model_l * share
