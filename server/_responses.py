"""Turns decided rows into ScoreResponse messages: ranked reasons, guidance, explanations.

``build_responses`` answers a whole batch: per-batch work (array conversions, which rows hit an active rule) is
done once, and the bulk of traffic (ALLOW, no active rule hit, no explain) gets a message with a handful of field
assignments. Every other row takes the detailed path that ``build_response`` (one row) also uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from outpost.v1 import outpost_pb2 as pb

from features import ENUMS, FEATURE_INDEX, FEATURE_NAMES
from rules_engine import hits_by_row
from server._pipeline import MIN_MODEL_POINTS, Decisions
from server._policy import ALLOW, ActionPolicy
from server._reasons import ranked_reasons, reason_message
from server._reply_wire import encode_reply
from server._requests import normalise_locale

__all__ = ["BatchReply", "build_response", "build_responses"]

_TELLER = ENUMS["Channel"]["TELLER"]
_CHANNEL = FEATURE_INDEX["channel"]
_MAX_REASONS = 8


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
    active = decisions.snapshot.rules.active
    hit_rules = [j for j in np.flatnonzero(decisions.hits[row]).tolist() if active[j]]
    response = pb.ScoreResponse()
    _detailed(response, row, transaction_id, decisions, hit_rules, locale, explain, policy, degraded_reason)
    return response


def build_responses(
    decisions: Decisions,
    requests: Sequence[pb.ScoreRequest],
    *,
    policy: ActionPolicy,
    degraded_reason: str | Sequence[str] = "",
    transaction_ids: Sequence[str] | None = None,
    into: RepeatedCompositeFieldContainer[pb.ScoreResponse] | None = None,
) -> list[pb.ScoreResponse]:
    """The replies for every row of ``decisions``; ``requests`` are row-aligned (their locale and explain flag).

    Row by row equal to ``build_response``. ``degraded_reason`` is one reason for every row or one per row; a
    row's empty reason falls back to ``decisions.degraded_reason``. ``transaction_ids`` saves reading them from
    the requests again. With ``into`` (e.g. ``ScoreBatchResponse().responses``) the replies are added to that
    repeated field, which saves copying them there afterwards; the returned list then refers to its elements.
    """
    n = len(requests)
    snap = decisions.snapshot
    rules = snap.rules
    version = rules.version
    model_version = snap.model_version
    actions = decisions.actions.tolist()
    risk = decisions.risk.tolist()
    probability = decisions.probability.tolist()
    used_model = decisions.used_model.tolist()
    hit_rules = _active_hits(decisions)
    batch_reason = decisions.degraded_reason
    reasons: Sequence[str] = (
        [degraded_reason or batch_reason] * n
        if isinstance(degraded_reason, str)
        else [reason or batch_reason for reason in degraded_reason]
    )
    if len(reasons) != n or len(actions) != n or (transaction_ids is not None and len(transaction_ids) != n):
        raise ValueError(
            f"build_responses: {n} requests but {len(actions)} decided rows, {len(reasons)} degraded reasons and "
            f"{'no' if transaction_ids is None else len(transaction_ids)} transaction ids; pass row-aligned inputs"
        )
    explain = np.fromiter((r.explain for r in requests), dtype=bool, count=n)
    detailed = _detailed_rows(decisions, explain, hit_rules).tolist()
    explained = _model_explanations(decisions, requests, hit_rules, explain)
    new = pb.ScoreResponse if into is None else into.add
    out: list[pb.ScoreResponse] = []
    for i, req in enumerate(requests):
        txn_id = req.transaction.transaction_id if transaction_ids is None else transaction_ids[i]
        action = actions[i]
        response = new()
        if detailed[i]:
            _detailed(
                response,
                i,
                txn_id,
                decisions,
                hit_rules.get(i, []),
                normalise_locale(req.locale),
                req.explain,
                policy,
                reasons[i],
                explained.get(i),
            )
        else:
            # No reasons, no guidance (not above ALLOW), no features (no explain): only the scalar fields.
            response.transaction_id = txn_id
            response.risk_score = risk[i]
            response.action = action
            response.model_probability = probability[i]
            response.ruleset_version = version
            if used_model[i]:
                response.model_version = model_version
            reason = reasons[i]
            if reason:
                response.degraded = True
                response.degraded_reason = reason
        out.append(response)
    return out


def _active_hits(decisions: Decisions) -> dict[int, list[int]]:
    """Row -> its active rule hits (column indices in order), from one pass over the hit matrix."""
    # Most batches of one have none: counting is the cheapest test. hit_cells is row-major, so each row's rules come
    # in column order, as build_response visits them.
    if not np.count_nonzero(decisions.hits):
        return {}
    return hits_by_row(*decisions.hit_cells(), keep=decisions.snapshot.rules.active.tolist())


def _detailed_rows(decisions: Decisions, explain: np.ndarray, hit_rules: dict[int, list[int]]) -> np.ndarray:
    """Rows whose reply needs more than the scalar fields: above ALLOW, ``explain`` asked, or an active rule hit."""
    detailed: np.ndarray = (decisions.actions > ALLOW) | explain
    if hit_rules:
        detailed[list(hit_rules)] = True
    return detailed


class BatchReply:
    """A ScoreBatch reply: detailed rows built now (as ``build_responses`` builds them), the bytes once its
    latency is known (``encode``).

    From ``NATIVE_MIN_ROWS`` rows on, plain rows never become messages: ``server._reply_wire`` writes them. Below
    that its fixed cost (about 20 µs a call) outweighs the saving, and every row is a message.
    """

    NATIVE_MIN_ROWS = 32

    def __init__(
        self,
        decisions: Decisions,
        requests: Sequence[pb.ScoreRequest],
        *,
        policy: ActionPolicy,
        degraded_reason: str,
        transaction_ids: Sequence[str],
        explain: np.ndarray | None = None,
    ) -> None:
        """``explain`` is the requests' explain flags, if the caller read them already (bool, row-aligned)."""
        n = len(requests)
        if len(decisions.actions) != n or len(transaction_ids) != n:
            raise ValueError(
                f"BatchReply: {n} requests, {len(decisions.actions)} decided rows and {len(transaction_ids)} "
                "transaction ids; pass row-aligned inputs"
            )
        self._decisions = decisions
        self._reason = degraded_reason or decisions.degraded_reason
        self._ids = transaction_ids
        self._message: pb.ScoreBatchResponse | None = None
        self._messages: list[pb.ScoreResponse] = []  # the rows built as messages: all of them below NATIVE_MIN_ROWS
        if n < self.NATIVE_MIN_ROWS:
            self._message = pb.ScoreBatchResponse()
            self._messages = build_responses(decisions, requests, policy=policy, degraded_reason=degraded_reason,
                                             transaction_ids=transaction_ids, into=self._message.responses)
            return
        hit_rules = _active_hits(decisions)
        if explain is None:
            explain = np.fromiter((r.explain for r in requests), dtype=bool, count=n)
        detailed = _detailed_rows(decisions, explain, hit_rules)
        self._plain = ~detailed
        explained = _model_explanations(decisions, requests, hit_rules, explain)
        for i in np.flatnonzero(detailed).tolist():
            response = pb.ScoreResponse()
            req = requests[i]
            _detailed(response, i, transaction_ids[i], decisions, hit_rules.get(i, []), normalise_locale(req.locale),
                      req.explain, policy, self._reason, explained.get(i))
            self._messages.append(response)

    def encode(self, latency_us: int) -> bytes:
        """The ScoreBatchResponse's wire bytes, every row with ``latency_us``."""
        for response in self._messages:
            response.latency_us = latency_us
        if self._message is not None:
            return self._message.SerializeToString(deterministic=True)
        d = self._decisions
        return encode_reply(
            self._plain,
            self._ids,
            d.risk,
            d.actions,
            d.probability,
            d.used_model,
            ruleset_version=d.snapshot.rules.version,
            model_version=d.snapshot.model_version,
            degraded_reason=self._reason,
            latency_us=latency_us,
            serialized=[r.SerializeToString(deterministic=True) for r in self._messages],
        )


def _wants_model_reasons(decisions: Decisions, row: int, action: int, explain: bool, model_points: float) -> bool:
    # Model reasons cost a tree walk: they are worked out where someone reads them (an action above ALLOW, or an
    # explicit explain), not for the bulk of allowed payments.
    return (
        (explain or action > ALLOW)
        and decisions.snapshot.model is not None
        and bool(decisions.used_model[row])
        and model_points >= MIN_MODEL_POINTS
    )


def _model_explanations(
    decisions: Decisions,
    requests: Sequence[pb.ScoreRequest],
    hit_rules: dict[int, list[int]],
    explain: np.ndarray | None = None,
) -> dict[int, list[tuple[str, float]]]:
    """Model reasons of every row that shows them (row -> explain()): those the pipeline worked out, and the others
    (rows with ``explain`` set, or every row of decisions from ``decide`` alone) from one tree walk over them.

    ``explain`` is the requests' explain flags if the caller has them already.
    """
    model = decisions.snapshot.model
    done = decisions.explanations
    if model is None:
        return done
    actions = decisions.actions
    if explain is None:
        explain = np.fromiter((r.explain for r in requests), bool, len(requests))
    candidates = np.flatnonzero((actions > ALLOW) | explain)
    rows = [
        i for i in candidates.tolist()
        if i not in done
        and _wants_model_reasons(decisions, i, int(actions[i]), bool(explain[i]), float(decisions.model_points[i]))
    ]
    if len(rows) < 2:  # one row: explain() in _detailed is the same walk
        return done
    return {**done, **dict(zip(rows, model.explain_rows(decisions.features[rows]), strict=True))}


def _detailed(
    response: pb.ScoreResponse,
    row: int,
    transaction_id: str,
    decisions: Decisions,
    hit_rules: list[int],
    locale: str,
    explain: bool,
    policy: ActionPolicy,
    degraded_reason: str,
    contributions: list[tuple[str, float]] | None = None,
) -> None:
    """Fill ``response`` for one row whose active rule hits (column indices, in order) are ``hit_rules``.

    ``contributions`` is the row's ``ModelRunner.explain`` if the caller worked it out already (for a whole batch).
    """
    snap = decisions.snapshot
    rules = snap.rules
    x = decisions.features[row]
    action = int(decisions.actions[row])
    model_points = float(decisions.model_points[row])
    if _wants_model_reasons(decisions, row, action, explain, model_points):
        assert snap.model is not None
        if contributions is None:
            contributions = snap.model.explain(x)
    else:
        contributions = None
    reasons = ranked_reasons(
        rules, hit_rules, decisions.rule_evidence, float(decisions.rule_share[row]), model_points, contributions
    )
    all_rules = rules.rules
    guidance = ""
    if int(x[_CHANNEL]) == _TELLER and action > ALLOW:
        # The guidance of the rule with the most points that has one, else the policy's text for the action.
        for reason in reasons:
            j = reason[4]
            if isinstance(j, int) and (all_rules[j].guidance_zh or all_rules[j].guidance_en):
                guidance = rules.guidance(j, x, locale)
                if guidance:
                    break
        guidance = guidance or policy.teller_text(action, locale)
    response.transaction_id = transaction_id
    response.risk_score = int(decisions.risk[row])
    response.action = action  # type: ignore[assignment]
    # Messages are made for the reasons shown only, in place in the reply (a Reason built apart is copied again
    # when the reply takes it).
    seen: set[str] = set()
    ranked = 0
    add = response.reasons.add
    for reason in reasons:
        code = reason[1]
        message = reason_message(rules, x, reason, locale)
        if code in seen or message in seen:
            continue
        seen.update((code, message))
        add(code=code, message=message, source=reason[2], contribution=round(reason[0], 2), typology=reason[3])
        ranked += 1
        if ranked == _MAX_REASONS:
            break
    response.model_probability = float(decisions.probability[row])
    response.ruleset_version = rules.version
    response.model_version = snap.model_version if decisions.used_model[row] else ""
    response.degraded = bool(degraded_reason)
    response.degraded_reason = degraded_reason
    response.guidance = guidance
    response.rule_hits.extend([all_rules[j].id for j in hit_rules])
    if explain:
        response.features.update(zip(FEATURE_NAMES, x.tolist(), strict=True))
