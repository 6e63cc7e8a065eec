"""The reasons of one decided row, ranked: what the reply shows a caller and the alert shows an analyst.

``ranked_reasons`` lists them without their messages: the active rules the row hit, with their points, then the
model's share of points spread over its explanation, highest points first (ties keep that order).
``reason_message`` words one of them in a locale. The reply words its ranked reasons in the request's locale and
keeps the first ``_MAX_REASONS`` distinct ones; the alert keeps every reason in both languages. Both take them
from here, so a reason has the same code, points and words in both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from outpost.v1 import outpost_pb2 as pb

from features import FEATURE_INDEX
from models import model_reason, reason_shares
from rules_engine import RuleSet

__all__ = ["REASON_SOURCES", "Reason", "ranked_reasons", "reason_message", "reason_words"]

# (points, code, source, typology, what): ``what`` is the rule's column for a rule (source pb.RULE), the feature's
# name for the model (source pb.MODEL). A rule's code is its id; the model's is ``M_<feature>``.
Reason = tuple[float, str, int, str, int | str]
# A reason's source as the alert store writes it.
REASON_SOURCES: dict[int, str] = {pb.RULE: "rule", pb.MODEL: "model"}


def ranked_reasons(
    rules: RuleSet,
    hit_rules: Sequence[int],
    evidence: np.ndarray,
    share: float,
    model_points: float = 0.0,
    contributions: Sequence[tuple[str, float]] | None = None,
) -> list[Reason]:
    """The reasons of one row, highest points first.

    ``hit_rules``: the columns of the active rules it hit, in order; a hit of rule ``j`` is worth
    ``evidence[j] * share`` points (as ``Decisions.rule_points`` writes them). ``contributions``: the model's
    explanation of the row (``ModelRunner.explain``), or None when the row shows no model reasons; the
    ``model_points`` are shared over it.
    """
    reasons: list[Reason] = []
    all_rules = rules.rules
    for j in hit_rules:
        rule = all_rules[j]
        reasons.append((float(evidence[j] * share), rule.id, pb.RULE, rule.typology, j))
    if contributions is not None:
        for name, points in reason_shares(contributions, model_points):
            reasons.append((points, f"M_{name}", pb.MODEL, "", name))
    reasons.sort(key=_minus_points)
    return reasons


def _minus_points(reason: Reason) -> float:
    return -reason[0]


def reason_message(rules: RuleSet, x: np.ndarray, reason: Reason, locale: str) -> str:
    """The words of ``reason`` for the row of features ``x``, in ``locale`` ('en' or zh-CN)."""
    what = reason[4]
    if isinstance(what, int):
        return rules.reason(what, x, locale)
    return model_reason(what, float(x[FEATURE_INDEX[what]]), locale)


def reason_words(rules: RuleSet, x: np.ndarray, reason: Reason) -> tuple[str, str]:
    """``reason_message`` in zh-CN and in English, for a reader of both (the alert)."""
    what = reason[4]
    if isinstance(what, int):
        return rules.reason(what, x, "zh-CN"), rules.reason(what, x, "en")
    value = float(x[FEATURE_INDEX[what]])
    return model_reason(what, value, "zh-CN"), model_reason(what, value, "en")
