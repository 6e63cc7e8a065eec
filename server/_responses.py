"""Turns decided rows into ScoreResponse messages: ranked reasons, guidance, explanations."""

from __future__ import annotations

import numpy as np
from outpost.v1 import outpost_pb2 as pb

from features import ENUMS, FEATURE_INDEX, FEATURE_NAMES
from models import model_reason
from server._pipeline import Decisions
from server._policy import ALLOW, ActionPolicy

__all__ = ["build_response"]

_TELLER = ENUMS["Channel"]["TELLER"]
_CHANNEL = FEATURE_INDEX["channel"]
_MAX_REASONS = 8
_MIN_MODEL_POINTS = 1.0


def build_response(
    row: int,
    transaction_id: str,
    decisions: Decisions,
    *,
    locale: str,
    explain: bool,
    policy: ActionPolicy,
    degraded_reason: str = "",
) -> pb.ScoreResponse:
    """The reply for one row of ``decisions``."""
    snap = decisions.snapshot
    rules = snap.rules
    x = decisions.features[row]
    action = int(decisions.actions[row])
    reasons: list[tuple[float, str, pb.Reason]] = []
    hit_ids: list[str] = []
    guidance = ""
    best_guidance_points = -1.0
    for j in np.flatnonzero(decisions.hits[row]).tolist():
        if not rules.active[j]:
            continue
        rule = rules.rules[j]
        points = float(decisions.rule_points[row, j])
        hit_ids.append(rule.id)
        reasons.append(
            (
                points,
                rule.id,
                pb.Reason(
                    code=rule.id,
                    message=rules.reason(j, x, locale),
                    source=pb.RULE,
                    contribution=round(points, 2),
                    typology=rule.typology,
                ),
            )
        )
        if points > best_guidance_points and (rule.guidance_zh or rule.guidance_en):
            text = rules.guidance(j, x, locale)
            if text:
                guidance, best_guidance_points = text, points
    model_points = float(decisions.model_points[row])
    # Model reasons cost a tree walk: they are worked out where someone reads them (an action above ALLOW, or an
    # explicit explain), not for the bulk of allowed payments.
    wanted = explain or action > ALLOW
    if wanted and snap.model is not None and decisions.used_model[row] and model_points >= _MIN_MODEL_POINTS:
        contributions = snap.model.explain(x)
        total = sum(c for _, c in contributions)
        for name, c in contributions:
            share = model_points * (c / total) if total > 0 else model_points / max(len(contributions), 1)
            reasons.append(
                (
                    share,
                    f"M_{name}",
                    pb.Reason(
                        code=f"M_{name}",
                        message=model_reason(name, float(x[FEATURE_INDEX[name]]), locale),
                        source=pb.MODEL,
                        contribution=round(share, 2),
                    ),
                )
            )
    reasons.sort(key=lambda r: -r[0])
    seen: set[str] = set()
    ranked: list[pb.Reason] = []
    for _, code, reason in reasons:
        if code in seen or reason.message in seen:
            continue
        seen.update((code, reason.message))
        ranked.append(reason)
        if len(ranked) == _MAX_REASONS:
            break
    at_counter = int(x[_CHANNEL]) == _TELLER and action > ALLOW
    guidance = (guidance or policy.teller_text(action, locale)) if at_counter else ""
    response = pb.ScoreResponse(
        transaction_id=transaction_id,
        risk_score=int(decisions.risk[row]),
        action=action,  # type: ignore[arg-type]
        reasons=ranked,
        model_probability=float(decisions.probability[row]),
        ruleset_version=rules.version,
        model_version=snap.model_version if decisions.used_model[row] else "",
        degraded=bool(degraded_reason),
        degraded_reason=degraded_reason,
        guidance=guidance,
        rule_hits=hit_ids,
    )
    if explain:
        response.features.update(zip(FEATURE_NAMES, x.tolist(), strict=True))
    return response
