"""Evaluation: alerting at a fixed rate with ties, metrics, and fitting rule weights given the model."""

from __future__ import annotations

import numpy as np

from models._evaluation import alert_weights, evaluate_scores, fit_rule_weights, format_report, hybrid_report


def test_alert_weights_take_exactly_k_with_ties() -> None:
    """With ties at the cut, the weights still add up to rate * n, ties sharing the remainder."""
    scores = np.array([5, 5, 5, 3, 3, 1, 1, 1, 1, 0], dtype=float)
    weights, cut = alert_weights(scores, 0.4)
    assert cut == 3
    assert np.isclose(weights.sum(), 4)
    assert weights[:3].tolist() == [1, 1, 1] and weights[3:5].tolist() == [0.5, 0.5] and not weights[5:].any()
    weights, cut = alert_weights(scores, 0.2)
    assert cut == 5 and np.allclose(weights[:3], 2 / 3) and not weights[3:].any()


def test_evaluate_scores_perfect_and_random() -> None:
    """A perfect score gets AUC 1 and recall at the rate bounded by the alerts; typologies are reported."""
    y = np.zeros(1000, dtype=int)
    y[:5] = 1
    typology = np.where(y == 1, "mule", "")
    report = evaluate_scores(y.astype(float), y, typology, 0.005)
    assert report["auc"] == 1.0 and report["average_precision"] == 1.0
    assert report["recall_at_rate"] == 1.0
    assert report["recall_by_typology"] == {"mule": 1.0}


def test_fitted_weights_reward_informative_rules_only() -> None:
    """A rule that flags fraud the model misses gets a high weight; a rule hitting at random gets ~0."""
    rng = np.random.default_rng(0)
    n = 20_000
    y = rng.random(n) < 0.01
    p = np.where(y, 0.05, 0.01)
    informative = y & (rng.random(n) < 0.6)
    noise = rng.random(n) < 0.05
    hits = np.stack([informative, noise], axis=1).astype(np.uint8)
    weights = fit_rule_weights(p, hits, y, np.array([True, True]))
    assert weights[0] > 800
    assert weights[1] < 50
    shadow = fit_rule_weights(p, hits, y, np.array([True, False]))
    assert shadow[1] == 0


def test_hybrid_report_and_format() -> None:
    """The report has rules, model, hybrid and hybrid_fitted, and formats into a table naming each."""
    rng = np.random.default_rng(1)
    y = (rng.random(5000) < 0.02).astype(int)
    p = np.clip(y * 0.3 + rng.random(5000) * 0.2, 0, 1)
    hits = (y[:, None] * (rng.random((5000, 2)) < 0.5)).astype(np.uint8)
    typology = np.where(y == 1, "card_testing", "")
    report = hybrid_report(p, hits, np.array([300.0, 200.0]), np.array([True, True]), y, typology, 0.01,
                           np.array([500.0, 0.0]))
    text = format_report({**report, "period": "test"})
    for word in ("rules", "model", "hybrid", "hybrid*", "card_testing", "average precision"):
        assert word in text
