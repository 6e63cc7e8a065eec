"""Per-row CPU of the server's request and reply handling, old path against new, side by side in one run.

Requests: ``score_request`` on each row then ``encode_requests`` (the path Score and ScoreBatch took) against the
one-pass ``RequestValidator.check_and_encode``, with the identifier-key memo empty (every id hashed: the figure
for traffic from many accounts) and full (every id seen before), and against ScoreBatch's compiled decoder
(``check_and_encode_wire``). Replies: ``build_response`` row by row (the
micro-batcher's path) against ``build_responses`` for the batch, on decisions of the shipped rules and model over
simulated traffic, and for ScoreBatch the same plus putting the replies into the ScoreBatchResponse (copying a
finished list, as before, against building them in place).

In-process timing (``time.perf_counter`` around each call, a different slice of traffic each repetition), medians
of per-row microseconds at batch sizes 1, 16 and 100. ``run(quick)`` returns a Markdown section;
``python bench/bench_rows.py [--quick]`` prints it.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from outpost.v1 import outpost_pb2 as pb

from features import FeatureConfig, FeatureEngine
from loadtest import frame_to_requests, simulated_transactions
from models import ModelRunner, default_model_dir
from rules_engine import RuleSet
from server import ActionPolicy, Decisions, ScoringPipeline, Settings, Snapshot
from server._requests import RequestValidator, encode_requests, normalise_locale
from server._responses import BatchReply, build_response, build_responses

SIZES = (1, 16, 100)
TRAFFIC = 3000
SKEW_DAYS = 100_000  # the simulated period is in the past: accept its event times


def _median_us_per_row(
    calls: Sequence[Callable[[], object]], size: int, prepare: Callable[[int], None] | None = None
) -> float:
    """Median over the calls of (seconds per call / size), in microseconds; ``prepare(k)`` runs untimed first."""
    samples = []
    for k, call in enumerate(calls):
        if prepare is not None:
            prepare(k)
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) / size * 1e6)
    return statistics.median(samples)


def _slice(decisions: Decisions, rows: slice | np.ndarray) -> Decisions:
    return dataclasses.replace(
        decisions,
        features=decisions.features[rows],
        hits=decisions.hits[rows],
        probability=decisions.probability[rows],
        risk=decisions.risk[rows],
        rule_share=decisions.rule_share[rows],
        model_points=decisions.model_points[rows],
        actions=decisions.actions[rows],
        used_model=decisions.used_model[rows],
    )


def _old_requests(
    validator: RequestValidator, batch: Sequence[pb.ScoreRequest], now: int, config: FeatureConfig
) -> Callable[[], object]:
    def call() -> object:
        if len(batch) == 1:
            violations = validator.score_request(batch[0], now)
        else:
            violations = [
                v for i, r in enumerate(batch) for v in validator.score_request(r, now, prefix=f"requests[{i}].")
            ]
        assert not violations
        return encode_requests(batch, config)

    return call


def _new_requests(holder: list[RequestValidator], batch: Sequence[pb.ScoreRequest], now: int) -> Callable[[], object]:
    """check_and_encode by the validator in ``holder`` at call time (the cold figures swap in a fresh one)."""
    indexed = len(batch) > 1

    def call() -> object:
        violations, records = holder[0].check_and_encode(batch, now, indexed=indexed)
        assert not violations
        return records

    return call


def _wire_requests(validator: RequestValidator, message: pb.ScoreBatchRequest, now: int) -> Callable[[], object]:
    """ScoreBatch's path: serialize the parsed batch again (as the servicer does) and decode it in compiled code."""
    requests = message.requests

    def call() -> object:
        violations, records = validator.check_and_encode_wire(requests, message.SerializeToString(), now)
        assert not violations
        return records

    return call


def _old_replies(
    decisions: Decisions, batch: Sequence[pb.ScoreRequest], policy: ActionPolicy, container: bool
) -> Callable[[], object]:
    def call() -> object:
        ids = [r.transaction.transaction_id for r in batch]
        replies = [
            build_response(i, ids[i], decisions, locale=normalise_locale(r.locale), explain=r.explain, policy=policy)
            for i, r in enumerate(batch)
        ]
        return pb.ScoreBatchResponse(responses=replies) if container else replies

    return call


def _new_replies(
    decisions: Decisions, batch: Sequence[pb.ScoreRequest], policy: ActionPolicy, container: bool
) -> Callable[[], object]:
    def call() -> object:
        ids = [r.transaction.transaction_id for r in batch]
        if not container:
            return build_responses(decisions, batch, policy=policy, transaction_ids=ids)
        reply = pb.ScoreBatchResponse()
        build_responses(decisions, batch, policy=policy, transaction_ids=ids, into=reply.responses)
        return reply

    return call


def _serialized_replies(
    decisions: Decisions, batch: Sequence[pb.ScoreRequest], policy: ActionPolicy, native: bool
) -> Callable[[], object]:
    def call() -> object:
        ids = [r.transaction.transaction_id for r in batch]
        if native:  # what ScoreBatch does: plain rows written in compiled code
            return BatchReply(decisions, batch, policy=policy, degraded_reason="", transaction_ids=ids).encode(1)
        reply = pb.ScoreBatchResponse()
        for response in build_responses(decisions, batch, policy=policy, transaction_ids=ids, into=reply.responses):
            response.latency_us = 1
        return reply.SerializeToString()

    return call


def _ratio(old: float, new: float) -> str:
    return f"{old / new:.1f}x" if new > 0 else "n/a"


def run(quick: bool = False) -> str:
    """Measure the request and reply paths, old and new, and return a Markdown section."""
    reps = 60 if quick else 300
    settings = Settings()
    config = FeatureConfig()
    rules = RuleSet.load(settings.rules_path)
    model = ModelRunner.load(default_model_dir())
    model.warm()
    policy = ActionPolicy.load(settings.policy_path)
    pipeline = ScoringPipeline(engine=FeatureEngine.open(config), snapshot=Snapshot(rules, model), policy=policy)
    frame = simulated_transactions(TRAFFIC, seed=7).head(TRAFFIC).reset_index(drop=True)
    requests = frame_to_requests(frame)
    decisions = pipeline.run(encode_requests(requests, config))
    now = time.time_ns() // 1000
    active_hit = np.logical_and(decisions.hits, rules.active).any(axis=1)
    plain = np.flatnonzero((decisions.actions == 1) & ~active_hit)
    currencies = list({r.transaction.currency: r for r in requests}.values())
    rows_req: list[list[float]] = []
    rows_rep: list[list[float]] = []
    for size in SIZES:
        starts = [(k * 97) % (TRAFFIC - size) for k in range(reps)]
        batches = [requests[s : s + size] for s in starts]
        warm = RequestValidator(config, max_skew_days=SKEW_DAYS)
        warm.check_and_encode(requests, now)  # every identifier's key memoised
        cold: list[RequestValidator] = []

        def fresh(_: int, cold: list[RequestValidator] = cold) -> None:
            cold[:] = [RequestValidator(config, max_skew_days=SKEW_DAYS)]
            cold[0].check_and_encode(currencies, now)  # every currency's ratio known, as in a running server ...
            cold[0]._keys.clear()  # ... but no identifier's key

        old_req = _median_us_per_row([_old_requests(warm, b, now, config) for b in batches], size)
        new_cold = _median_us_per_row([_new_requests(cold, b, now) for b in batches], size, fresh)
        new_warm = _median_us_per_row([_new_requests([warm], b, now) for b in batches], size)
        messages = [pb.ScoreBatchRequest(requests=b) for b in batches]
        wire = _median_us_per_row([_wire_requests(warm, m, now) for m in messages], size)
        rows_req.append([float(size), old_req, new_cold, new_warm, wire])

        parts = [_slice(decisions, slice(s, s + size)) for s in starts]
        plain_rows = [plain[(k * 89) % (len(plain) - size) :][:size] for k in range(reps)]
        plain_parts = [_slice(decisions, r) for r in plain_rows]
        plain_batches = [[requests[i] for i in r.tolist()] for r in plain_rows]
        figures = [float(size)]
        for container in (False, True):
            for make in (_old_replies, _new_replies):
                calls = [make(d, b, policy, container) for d, b in zip(parts, batches, strict=True)]
                figures.append(_median_us_per_row(calls, size))
        for make in (_old_replies, _new_replies):
            calls = [make(d, b, policy, False) for d, b in zip(plain_parts, plain_batches, strict=True)]
            figures.append(_median_us_per_row(calls, size))
        for native in (False, True):
            calls = [_serialized_replies(d, b, policy, native) for d, b in zip(parts, batches, strict=True)]
            figures.append(_median_us_per_row(calls, size))
        rows_rep.append(figures)

    share = 100.0 * len(plain) / len(requests)
    lines = [
        "## Per-row request and reply handling (server/_requests.py, server/_responses.py)",
        "",
        f"In-process, one core, {reps} repetitions per figure (each on a different slice of {TRAFFIC:,} simulated "
        "transactions), medians in **µs per transaction**; the machine is shared, so treat them as upper bounds. "
        f"{share:.1f}% of the simulated rows are plain ALLOW (no active rule hit, no explain); the others take the "
        "detailed reply path (reasons, model explanation, guidance), which is the same code in old and new.",
        "",
        "### Validation + encoding of requests",
        "",
        "Old: `score_request` per row (ScoreBatch prefixes each path with `requests[i].`) then `encode_requests`. "
        "New: `RequestValidator.check_and_encode`, the id-key memo empty (every identifier hashed with blake2b: "
        "traffic from accounts not seen lately) or full (ids seen before). ScoreBatch: "
        "`check_and_encode_wire`, the compiled decoder of server/_wire.py on the batch's bytes (serializing the "
        "parsed batch again included, as the servicer does; every identifier hashed).",
        "",
        "| batch | old | new, keys hashed | new, keys memoised | ScoreBatch compiled | old / new hashed "
        "| old / new memoised | old / compiled |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, old, new_c, new_w, wire in rows_req:
        lines.append(
            f"| {n:.0f} | {old:.2f} | {new_c:.2f} | {new_w:.2f} | {wire:.2f} | {_ratio(old, new_c)} "
            f"| {_ratio(old, new_w)} | {_ratio(old, wire)} |"
        )
    lines += [
        "",
        "### Building the replies",
        "",
        "Old: `build_response` row by row. New: `build_responses` for the batch. 'ScoreBatch' adds putting the "
        "replies into the ScoreBatchResponse: old copies the finished list in (`ScoreBatchResponse(responses=...)`), "
        "new builds them in place (`into=reply.responses`). 'Plain ALLOW' batches hold only such rows (the fast "
        "path). 'Bytes': the whole ScoreBatch reply to wire bytes, latency set, with messages (in place, then "
        "`SerializeToString`) against what ScoreBatch does (`BatchReply`: plain rows written in compiled code).",
        "",
        "| batch | old | new | old / new | ScoreBatch old | ScoreBatch new | old / new | plain ALLOW old "
        "| plain ALLOW new | old / new | bytes, messages | bytes, compiled | messages / compiled |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, old, new, b_old, b_new, p_old, p_new, s_msg, s_nat in rows_rep:
        lines.append(
            f"| {n:.0f} | {old:.2f} | {new:.2f} | {_ratio(old, new)} | {b_old:.2f} | {b_new:.2f} | "
            f"{_ratio(b_old, b_new)} | {p_old:.2f} | {p_new:.2f} | {_ratio(p_old, p_new)} | {s_msg:.2f} | "
            f"{s_nat:.2f} | {_ratio(s_msg, s_nat)} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
