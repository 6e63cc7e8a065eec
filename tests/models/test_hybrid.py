"""combine_scores: the documented noisy-OR and its contributions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import combine_scores

weights_st = st.lists(st.floats(0, 1000), min_size=1, max_size=8)


def test_formula_on_a_hand_computed_case() -> None:
    """p = 0.2 with active hits of 500 and 300: 1000 * (1 - 0.8 * 0.5 * 0.7) = 720."""
    risk, rule_points, model_points = combine_scores(
        np.array([0.2]), np.array([[1, 1, 0]], dtype=np.uint8), np.array([500.0, 300.0, 900.0]),
        np.array([True, True, True]),
    )
    assert risk.tolist() == [720]
    assert risk.dtype == np.int32
    assert rule_points[0, 2] == 0
    # Shares follow -log(1 - x): 0.5 carries more than 0.3, which carries more than 0.2.
    assert rule_points[0, 0] > rule_points[0, 1] > model_points[0] > 0


def test_shadow_rules_are_ignored() -> None:
    """A shadow rule's hit changes neither the score nor gets points."""
    hits = np.array([[1, 1]], dtype=np.uint8)
    risk, points, _ = combine_scores(np.array([0.1]), hits, np.array([400.0, 900.0]), np.array([True, False]))
    alone, _, _ = combine_scores(np.array([0.1]), hits[:, :1], np.array([400.0]), np.array([True]))
    assert risk.tolist() == alone.tolist()
    assert points[0, 1] == 0


def test_no_evidence_scores_zero() -> None:
    """No hits and p = 0 gives risk 0 and no points (no division by zero)."""
    risk, points, model_points = combine_scores(np.zeros(3), np.zeros((3, 2), np.uint8), np.full(2, 500.0),
                                                np.ones(2, bool))
    assert risk.tolist() == [0, 0, 0]
    assert not points.any() and not model_points.any()


def test_certainty_saturates_at_1000() -> None:
    """A weight of 1000 or p = 1 gives exactly 1000 with finite points."""
    risk, points, model_points = combine_scores(np.array([1.0, 0.0]), np.array([[0], [1]], np.uint8),
                                                np.array([1000.0]), np.array([True]))
    assert risk.tolist() == [1000, 1000]
    assert np.all(np.isfinite(points)) and np.all(np.isfinite(model_points))


def test_shape_errors_are_reported() -> None:
    """Mismatched shapes raise ValueError naming the expected shape."""
    with pytest.raises(ValueError, match="hits must have shape"):
        combine_scores(np.zeros(2), np.zeros((3, 1), np.uint8), np.zeros(1), np.ones(1, bool))


@settings(max_examples=200, deadline=None)
@given(p=st.floats(0, 1), weights=weights_st, data=st.data())
def test_properties(p: float, weights: list[float], data: st.DataObject) -> None:
    """Bounds, contributions summing to the score, and monotonicity in p and in hits."""
    r = len(weights)
    hits = np.array([data.draw(st.lists(st.integers(0, 1), min_size=r, max_size=r))], dtype=np.uint8)
    active = np.array(data.draw(st.lists(st.booleans(), min_size=r, max_size=r)))
    w = np.array(weights)
    risk, points, model_points = combine_scores(np.array([p]), hits, w, active)
    assert 0 <= risk[0] <= 1000
    assert points[0].sum() + model_points[0] == pytest.approx(float(risk[0]), abs=1e-6)
    assert np.all(points >= 0) and model_points[0] >= 0
    higher, _, _ = combine_scores(np.array([min(1.0, p + 0.1)]), hits, w, active)
    assert higher[0] >= risk[0]
    more_hits, _, _ = combine_scores(np.array([p]), np.ones_like(hits), w, active)
    assert more_hits[0] >= risk[0]
    expected = 1000 * (1 - (1 - p) * np.prod(np.where((hits[0] == 1) & active, 1 - w / 1000, 1.0)))
    assert abs(risk[0] - expected) <= 0.5 + 1e-6
