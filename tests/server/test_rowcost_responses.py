"""build_responses (a whole batch at once, fast path for plain ALLOW rows) and build_response equal the original
one-row builder, kept below as the reference, byte for byte: on a real pipeline's decisions over simulated
traffic, and on decisions perturbed so that rule hits, shadow hits, model reasons, teller guidance, explain,
English and degraded replies all occur."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import numpy as np
import pytest
from outpost.v1 import outpost_pb2 as pb

from features import ENUMS, FEATURE_INDEX, FEATURE_NAMES, FeatureConfig, FeatureEngine
from loadtest import frame_to_requests, simulated_transactions
from models import ModelRunner, combine_scores, default_model_dir, model_reason
from rules_engine import RuleSet, hits_by_row
from server import ActionPolicy, Decisions, ScoringPipeline, Settings, Snapshot, ranked_reasons
from server._policy import ALLOW
from server._requests import encode_requests, normalise_locale
from server._responses import BatchReply, build_response, build_responses

_TELLER = ENUMS["Channel"]["TELLER"]
_CHANNEL = FEATURE_INDEX["channel"]
_MAX_REASONS = 8
_MIN_MODEL_POINTS = 1.0


# The one-row builder as it was before build_responses (commit eed67dd), unchanged: the reference.
def _reference_build_response(
    row: int,
    transaction_id: str,
    decisions: Decisions,
    *,
    locale: str,
    explain: bool,
    policy: ActionPolicy,
    degraded_reason: str = "",
) -> pb.ScoreResponse:
    """The reply for one row of ``decisions`` (reference)."""
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
        points = float(decisions.rule_points(row)[j])
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


@pytest.fixture(scope="module")
def scored() -> tuple[Decisions, list[pb.ScoreRequest], ActionPolicy]:
    """The shipped rules, model and policy over an in-memory feature engine, run on ~3000 simulated requests."""
    settings = Settings()
    rules = RuleSet.load(settings.rules_path)
    model = ModelRunner.load(default_model_dir())
    policy = ActionPolicy.load(settings.policy_path)
    pipeline = ScoringPipeline(
        engine=FeatureEngine.open(FeatureConfig()), snapshot=Snapshot(rules, model), policy=policy
    )
    frame = simulated_transactions(3000, seed=13, fraud_scale=3.0).head(3000).reset_index(drop=True)
    requests = frame_to_requests(frame)
    rng = random.Random(3)
    for req in requests:
        req.locale = rng.choice(["", "zh-CN", "en", "en-GB", "zh"])
        req.explain = rng.random() < 0.05
    decisions = pipeline.run(encode_requests(requests, FeatureConfig()))
    return decisions, requests, policy


def _perturbed(decisions: Decisions, seed: int) -> Decisions:
    """The same decisions with extra random hits (active and shadow), actions and teller rows."""
    rng = np.random.default_rng(seed)
    n, r = decisions.hits.shape
    hits = decisions.hits.copy()
    extra = rng.random((n, r)) < 0.01
    hits[extra] = 1
    # Rows with nothing counted had no points to share; now each row's hits share some.
    rule_share = np.where(decisions.rule_share > 0, decisions.rule_share, 0.3) * rng.uniform(0.5, 1.0, n)
    actions = decisions.actions.copy()
    shuffle = np.asarray(rng.random(n) < 0.2)
    actions[shuffle] = rng.integers(1, 5, int(shuffle.sum()))
    features = decisions.features.copy()
    teller = rng.random(n) < 0.2
    features[teller, _CHANNEL] = _TELLER
    used = decisions.used_model.copy()
    used[rng.random(n) < 0.1] = False
    model_points = decisions.model_points.copy()
    model_points[rng.random(n) < 0.1] = 0.5
    return dataclasses.replace(
        decisions,
        hits=hits,
        rule_share=rule_share,
        actions=actions,
        features=features,
        used_model=used,
        model_points=model_points,
        explanations={},  # the pipeline's would be stale: the builders explain the perturbed rows themselves
    )


def _reference(
    decisions: Decisions, requests: Sequence[pb.ScoreRequest], policy: ActionPolicy, reasons: Sequence[str]
) -> list[bytes]:
    return [
        _reference_build_response(
            i,
            r.transaction.transaction_id,
            decisions,
            locale=normalise_locale(r.locale),
            explain=r.explain,
            policy=policy,
            degraded_reason=reasons[i] or decisions.degraded_reason,
        ).SerializeToString(deterministic=True)
        for i, r in enumerate(requests)
    ]


def _rows(decisions: Decisions, rows: slice) -> Decisions:
    """The decisions of a slice of the rows."""
    return dataclasses.replace(
        decisions,
        features=decisions.features[rows], hits=decisions.hits[rows], probability=decisions.probability[rows],
        risk=decisions.risk[rows], rule_share=decisions.rule_share[rows], model_points=decisions.model_points[rows],
        actions=decisions.actions[rows], used_model=decisions.used_model[rows],
    )


def _seeded(decisions: Decisions, seed: int | None) -> Decisions:
    """None: the pipeline's decisions; a seed: perturbed ones (and with seed 2 a batch-wide degraded reason)."""
    if seed is not None:
        decisions = _perturbed(decisions, seed)
    if seed == 2:
        decisions = dataclasses.replace(decisions, degraded_reason="state_unavailable")
    return decisions


def _bytes(responses: Sequence[pb.ScoreResponse]) -> list[bytes]:
    return [r.SerializeToString(deterministic=True) for r in responses]


def _coverage(responses: Sequence[pb.ScoreResponse]) -> dict[str, int]:
    return {
        "rule reasons": sum(any(x.source == pb.RULE for x in r.reasons) for r in responses),
        "model reasons": sum(any(x.source == pb.MODEL for x in r.reasons) for r in responses),
        "guidance": sum(bool(r.guidance) for r in responses),
        "features": sum(bool(r.features) for r in responses),
        "english": sum(any(x.message.isascii() for x in r.reasons) for r in responses),
        "degraded": sum(r.degraded for r in responses),
        "no model": sum(not r.model_version for r in responses),
        "plain allow": sum(r.action == ALLOW and not r.reasons for r in responses),
    }


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_batch_builder_equals_the_reference_row_by_row(
    scored: tuple[Decisions, list[pb.ScoreRequest], ActionPolicy], seed: int | None
) -> None:
    """build_responses (list and in-place) and build_response serialize exactly like the reference, every row."""
    decisions, requests, policy = scored
    decisions = _seeded(decisions, seed)
    # Unperturbed, the replies above ALLOW take the model explanations the pipeline worked out once; the reference
    # explains each row itself.
    assert bool(decisions.explanations) == (seed is None)
    rng = random.Random(seed)
    per_row = [rng.choice(["", "", "", "deadline"]) for _ in requests]
    want = _reference(decisions, requests, policy, per_row)
    got = build_responses(decisions, requests, policy=policy, degraded_reason=per_row)
    assert _bytes(got) == want
    ids = [r.transaction.transaction_id for r in requests]
    reply = pb.ScoreBatchResponse()
    in_place = build_responses(decisions, requests, policy=policy, degraded_reason=per_row, transaction_ids=ids,
                               into=reply.responses)
    assert _bytes(reply.responses) == want and _bytes(in_place) == want
    one_by_one = [
        build_response(i, ids[i], decisions, locale=normalise_locale(r.locale), explain=r.explain, policy=policy,
                       degraded_reason=per_row[i] or decisions.degraded_reason)
        for i, r in enumerate(requests)
    ]
    assert _bytes(one_by_one) == want
    seen = _coverage(got)
    if seed is not None:  # the perturbed decisions exercise every part of a reply
        assert all(count >= 10 for count in seen.values()), seen


def test_batches_of_every_size_and_one_reason_for_all(
    scored: tuple[Decisions, list[pb.ScoreRequest], ActionPolicy],
) -> None:
    """Slices of 1, 2, 16 and 100 rows with a single degraded reason equal the reference."""
    decisions, requests, policy = scored
    decisions = _perturbed(decisions, 4)
    for size in (1, 2, 16, 100):
        for start in range(0, 1200, 97):
            rows = slice(start, start + size)
            part = _rows(decisions, rows)
            reason = "deadline" if start % 2 else ""
            want = _reference(part, requests[rows], policy, [reason] * size)
            assert _bytes(build_responses(part, requests[rows], policy=policy, degraded_reason=reason)) == want


def test_misaligned_inputs_are_refused(scored: tuple[Decisions, list[pb.ScoreRequest], ActionPolicy]) -> None:
    """Fewer requests, reasons or ids than decided rows is a ValueError naming the counts."""
    decisions, requests, policy = scored
    with pytest.raises(ValueError, match="row-aligned"):
        build_responses(decisions, requests[:-1], policy=policy)
    with pytest.raises(ValueError, match="row-aligned"):
        build_responses(decisions, requests, policy=policy, degraded_reason=["x"])
    with pytest.raises(ValueError, match="row-aligned"):
        build_responses(decisions, requests, policy=policy, transaction_ids=["a"])


def _reference_reply(decisions: Decisions, requests: Sequence[pb.ScoreRequest], policy: ActionPolicy, ids: list[str],
                     reason: str, latency_us: int) -> bytes:
    reply = pb.ScoreBatchResponse()
    build_responses(decisions, requests, policy=policy, degraded_reason=reason, transaction_ids=ids,
                    into=reply.responses)
    for response in reply.responses:
        response.latency_us = latency_us
    return reply.SerializeToString(deterministic=True)


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_native_batch_reply_equals_the_serialized_messages(
    scored: tuple[Decisions, list[pb.ScoreRequest], ActionPolicy], seed: int | None
) -> None:
    """BatchReply's bytes equal the ScoreBatchResponse build_responses makes, serialized: every row, every field."""
    decisions, requests, policy = scored
    decisions = _seeded(decisions, seed)
    ids = [r.transaction.transaction_id for r in requests]
    ids[::7] = [f"交易-{i}" for i in range(len(ids[::7]))]  # multi-byte UTF-8 ids
    for reason, latency in (("", 0), ("deadline", 1234), ("", 2**40)):
        want = _reference_reply(decisions, requests, policy, ids, reason, latency)
        got = BatchReply(decisions, requests, policy=policy, degraded_reason=reason, transaction_ids=ids)
        assert got.encode(latency) == want, (seed, reason, latency)
        assert len(pb.ScoreBatchResponse.FromString(want).responses) == len(requests)


def test_native_batch_reply_of_every_size(scored: tuple[Decisions, list[pb.ScoreRequest], ActionPolicy]) -> None:
    """Replies of 1 to 100 rows, as messages and natively (from 32 rows), equal the serialized messages."""
    decisions, requests, policy = scored
    decisions = _perturbed(decisions, 5)
    for size in (1, 2, 16, BatchReply.NATIVE_MIN_ROWS - 1, BatchReply.NATIVE_MIN_ROWS, 100):
        for start in range(0, 1200, 131):
            rows = slice(start, start + size)
            part = _rows(decisions, rows)
            ids = [r.transaction.transaction_id for r in requests[rows]]
            want = _reference_reply(part, requests[rows], policy, ids, "", 77)
            assert BatchReply(part, requests[rows], policy=policy, degraded_reason="", transaction_ids=ids).encode(
                77) == want


def test_native_batch_reply_refuses_misaligned_inputs(
    scored: tuple[Decisions, list[pb.ScoreRequest], ActionPolicy],
) -> None:
    """Fewer requests or ids than decided rows is a ValueError naming the counts."""
    decisions, requests, policy = scored
    ids = [r.transaction.transaction_id for r in requests]
    with pytest.raises(ValueError, match="row-aligned"):
        BatchReply(decisions, requests[:-1], policy=policy, degraded_reason="", transaction_ids=ids[:-1])
    with pytest.raises(ValueError, match="row-aligned"):
        BatchReply(decisions, requests, policy=policy, degraded_reason="", transaction_ids=ids[:-1])


Scored = tuple[Decisions, list[pb.ScoreRequest], ActionPolicy]


def test_factored_rule_points_equal_the_combined_matrix(scored: Scored) -> None:
    """The pipeline keeps each row's share of points, merged across waves: rule_points(rows) and the rule reasons'
    points (ranked_reasons, which the reply and the alert show) equal combine_scores' (n, R) matrix on the batch's
    probabilities and hits, bit for bit."""
    decisions, requests, _ = scored
    accounts = [r.transaction.account_id for r in requests]
    assert len(set(accounts)) < len(accounts)  # accounts repeat: the batch ran in several waves, then merged
    rules = decisions.snapshot.rules
    risk, matrix, model_points = combine_scores(decisions.probability, decisions.hits, rules.weights, rules.active)
    assert np.array_equal(risk, decisions.risk) and np.array_equal(model_points, decisions.model_points)
    assert np.array_equal(decisions.rule_points(np.arange(len(requests))), matrix)
    rows, columns = decisions.hit_cells()
    assert rows.size > 100
    active = rules.active.tolist()
    shown, expected = [], []
    for i, hit in hits_by_row(rows, columns, keep=active).items():
        reasons = ranked_reasons(rules, hit, decisions.rule_evidence, float(decisions.rule_share[i]))
        shown += sorted((r[4], r[0]) for r in reasons)
        expected += [(j, matrix[i, j]) for j in hit]
    assert len(shown) > 100 and shown == expected
    assert np.array_equal(decisions.rule_points(int(rows[0])), matrix[rows[0]])
