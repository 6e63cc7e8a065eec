"""The scoring pipeline: features -> rules -> model -> hybrid score -> action policy -> state commit.

One code path for every caller: the gRPC servicers, ScoreBatch, and offline replays all call
``ScoringPipeline.run``. Rows are processed in waves in which every account appears at most once, so a
transaction's features see the final outcome (blocked or not) of every earlier transaction of its account,
exactly as if each had been sent alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numba
import numpy as np

from features import FEATURE_INDEX, BackendError, FeatureEngine, new_batch
from models import ModelRunner, hit_points, hybrid_scores
from rules_engine import RuleSet, hit_cells
from server._policy import ALLOW, BLOCK, CHALLENGE, ActionPolicy, hit_floors

__all__ = ["MIN_MODEL_POINTS", "DecisionSink", "Decisions", "ScoringPipeline", "Snapshot", "decide", "max_action"]

_CHANNEL = FEATURE_INDEX["channel"]
# A reply or an alert names the model's features among its reasons when the model added at least this many points.
MIN_MODEL_POINTS = 1.0
# While the state backend is down, calls try it again at most this often (the health probe also re-checks it).
STATE_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The rule set and models that score a call; swapped atomically as a whole on reload."""

    rules: RuleSet
    model: ModelRunner | None
    challenger: ModelRunner | None = None

    @property
    def model_version(self) -> str:
        return self.model.version if self.model is not None else ""


@dataclass(slots=True)
class Decisions:
    """Everything decided for a batch, row-aligned with the transaction records."""

    snapshot: Snapshot
    features: np.ndarray  # (n, F) float64
    hits: np.ndarray  # (n, R) uint8, shadow rules included
    probability: np.ndarray  # (n,) float64, 0 where the model was skipped
    risk: np.ndarray  # (n,) int32 0..1000
    rule_share: np.ndarray  # (n,) float64: a hit of active rule j is worth rule_evidence[j] * rule_share[i] points
    rule_evidence: np.ndarray  # (R,) float64, 0 for shadow rules (see models.HybridScores)
    model_points: np.ndarray  # (n,) float64
    actions: np.ndarray  # (n,) int8, proto Action numbers
    used_model: np.ndarray  # (n,) bool
    challenger_probability: np.ndarray | None = None
    degraded_reason: str = ""  # set when part of the pipeline was skipped for the whole batch
    extra: dict[str, object] = field(default_factory=dict)
    # Row -> ModelRunner.explain() of the rows above ALLOW to which the model added at least MIN_MODEL_POINTS,
    # worked out once by ScoringPipeline.run for the reply and the alert alike (empty from decide() alone:
    # consumers then explain rows themselves).
    explanations: dict[int, list[tuple[str, float]]] = field(default_factory=dict)
    _cells: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    def rule_points(self, rows: np.ndarray | list[int] | int) -> np.ndarray:
        """Points of each rule hit in ``rows`` (a row: (R,); rows: (k, R)), 0 where a rule did not hit or is shadow:
        its share of the row's risk, as ``models.combine_scores`` writes it."""
        return hit_points(self.hits[rows], self.rule_evidence, self.rule_share[rows])

    def hit_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, columns) of every rule hit (shadow rules included), row-major: worked out once for the reply,
        the metrics and the hit counters of a batch."""
        if self._cells is None:
            self._cells = hit_cells(self.hits)
        return self._cells


def max_action(actions: np.ndarray) -> int:
    """The largest of a batch's int8 actions (0 for none). Batches of a few rows are the usual case, and for them
    a max over the array's bytes costs a fraction of a numpy reduction, whose cost between calls is mostly cold."""
    if len(actions) <= 32 and actions.dtype == np.int8:
        return max(actions.tobytes(), default=0)
    return int(actions.max(initial=0))


class DecisionSink(Protocol):
    """Receives every decided batch (decision log, alert queue, metrics)."""

    def record(self, txn_ids: Sequence[str], txns: np.ndarray, decisions: Decisions) -> None: ...


def _waves(account_keys: np.ndarray) -> list[np.ndarray]:
    """Row indices split so that no account appears twice in one wave; order within an account is kept.

    A row's wave is the number of earlier rows of its account, counted in one pass over the rows with a small
    hash table (compiled): 121 -> 8 µs at the served batches of 500 (the two stable sorts it replaced, with
    numpy's splitting, cost more than the waves' own bookkeeping).
    """
    n = len(account_keys)
    if n == 1:
        return [np.arange(1)]
    order, bounds = _wave_order(account_keys)
    if len(bounds) == 2:
        return [order]
    return [order[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


@numba.njit(cache=True, nogil=True)
def _wave_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows ordered by wave then row, bounds of each wave in that order): a row's wave counts its account's
    earlier rows."""
    n = keys.size
    size = 16
    while size < 2 * n:
        size *= 2
    mask = size - 1
    slot_key = np.zeros(size, dtype=np.uint64)
    slot_count = np.zeros(size, dtype=np.int64)  # 0: free slot; else rows of that key so far
    wave_of = np.empty(n, dtype=np.int64)
    waves = 0
    for i in range(n):
        key = keys[i]
        h = (key ^ (key >> np.uint64(29))) * np.uint64(0xBF58476D1CE4E5B9)
        s = int(h >> np.uint64(40)) & mask
        while slot_count[s] != 0 and slot_key[s] != key:
            s = (s + 1) & mask
        w = slot_count[s]
        slot_key[s] = key
        slot_count[s] = w + 1
        wave_of[i] = w
        if w + 1 > waves:
            waves = w + 1
    bounds = np.zeros(waves + 1, dtype=np.int64)
    for i in range(n):
        bounds[wave_of[i] + 1] += 1
    for w in range(waves):
        bounds[w + 1] += bounds[w]
    fill = bounds[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[fill[wave_of[i]]] = i
        fill[wave_of[i]] += 1
    return order, bounds


class ScoringPipeline:
    """Scores batches of transaction records against the current snapshot and commits them to state."""

    def __init__(
        self,
        *,
        engine: FeatureEngine,
        snapshot: Snapshot,
        policy: ActionPolicy,
        sinks: Sequence[DecisionSink] = (),
    ) -> None:
        self.engine = engine
        self.policy = policy
        self._snapshot = snapshot
        self._sinks = list(sinks)
        self._swap_lock = threading.Lock()
        self.on_error: Callable[[str, BaseException], None] | None = None
        # Called with False when the state backend fails and with True when it answers again.
        self.on_state_change: Callable[[bool], None] | None = None
        self.state_ok = True
        self._state_retry_at = 0.0
        self._stateless: FeatureEngine | None = None
        if engine.backend != "embedded":
            # Ready now, off the event loop: loading its kernels at the first outage would stall every call.
            self._stateless = FeatureEngine.open(engine.config)
            self._stateless.score(_dry_run_row())

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def swap(self, snapshot: Snapshot) -> Snapshot:
        """Install a new snapshot atomically; calls in flight finish on the one they started with."""
        with self._swap_lock:
            previous, self._snapshot = self._snapshot, snapshot
        return previous

    def add_sink(self, sink: DecisionSink) -> None:
        self._sinks.append(sink)

    def run(
        self,
        txns: np.ndarray,
        *,
        use_model: np.ndarray | None = None,
        txn_ids: Sequence[str] | None = None,
        extra: Mapping[str, object] | None = None,
        record: bool = True,
    ) -> Decisions:
        """Score ``txns`` in order, apply the rows whose ``apply`` flag is set, and return the decisions.

        ``extra`` is handed to the decision sinks in ``Decisions.extra`` (e.g. row-aligned raw account ids for the
        alert queue, which the feature state never sees). With ``record=False`` the sinks are left to the caller,
        which calls ``record`` once its replies are on their way.
        """
        snap = self._snapshot  # one snapshot for the whole call
        n = len(txns)
        if use_model is None:
            use_model = np.ones(n, dtype=bool)
        if snap.model is None:
            use_model = np.zeros(n, dtype=bool)
        waves = _waves(txns["account_key"])
        if len(waves) == 1:
            decisions = self._run_wave(snap, txns, use_model)
        else:
            # take(): fancy indexing copies this structured dtype field by field, several times slower.
            parts = [(rows, self._run_wave(snap, txns.take(rows), use_model[rows])) for rows in waves]
            decisions = _merge(snap, n, parts)
        if snap.model is not None and max_action(decisions.actions) > ALLOW:  # else no row shows model reasons
            self._explain(snap.model, decisions)
        if extra:
            decisions.extra.update(extra)
        if record:
            self.record(txn_ids, txns, decisions)
        return decisions

    def record(self, txn_ids: Sequence[str] | None, txns: np.ndarray, decisions: Decisions) -> None:
        """Hand a decided batch to the decision sinks (decision log, alert queue, metrics, ...); none without ids."""
        if not self._sinks or txn_ids is None:
            return
        for sink in self._sinks:
            try:
                sink.record(txn_ids, txns, decisions)
            except Exception as exc:  # a sink must never fail a score that is already committed
                if self.on_error is not None:
                    self.on_error("decision_sink", exc)

    def _explain(self, model: ModelRunner, decisions: Decisions) -> None:
        """Model explanations of the rows whose reply and alert show model reasons, from one tree walk."""
        rows = np.flatnonzero(
            (decisions.actions > ALLOW) & decisions.used_model & (decisions.model_points >= MIN_MODEL_POINTS)
        )
        if not rows.size:
            return
        try:
            decisions.explanations = dict(zip(rows.tolist(), model.explain_rows(decisions.features[rows]), strict=True))
        except Exception as exc:  # the score stands; the reply and the alert explain each row themselves
            if self.on_error is not None:
                self.on_error("model_explanations", exc)

    def _run_wave(self, snap: Snapshot, txns: np.ndarray, use_model: np.ndarray) -> Decisions:
        if not self.state_ok and time.monotonic() < self._state_retry_at:
            # Known down: do not make this call wait on it again (a frozen Redis costs its full timeout).
            return self._without_state(snap, txns, use_model, None)
        try:
            features, handles = self.engine.score(txns)
        except BackendError as exc:
            return self._without_state(snap, txns, use_model, exc)
        decisions = decide(snap, self.policy, features, use_model)
        try:
            self.engine.commit(txns, handles, decisions.actions == BLOCK)
        except BackendError as exc:
            return self._without_state(snap, txns, use_model, exc)
        if not self.state_ok:
            self._set_state_ok(True)
        return decisions

    def _set_state_ok(self, ok: bool) -> None:
        self.state_ok = ok
        if self.on_state_change is not None:
            self.on_state_change(ok)

    def mark_state(self, ok: bool, exc: BaseException | None = None) -> None:
        """What a health probe found: the state backend answers or not (callbacks fire on a change only)."""
        if not ok:
            self._state_retry_at = time.monotonic() + STATE_RETRY_SECONDS
        if ok != self.state_ok:
            self._set_state_ok(ok)
            if exc is not None and self.on_error is not None:
                self.on_error("state_backend", exc)

    def _without_state(
        self, snap: Snapshot, txns: np.ndarray, use_model: np.ndarray, exc: BaseException | None
    ) -> Decisions:
        """The state backend failed: score on the transaction alone and apply each channel's fail mode.

        Nothing is applied to the state (it is unreachable); the reply says ``degraded``. Channels whose policy
        says ``fail_mode = "closed"`` get at least CHALLENGE.
        """
        if exc is not None:
            self._state_retry_at = time.monotonic() + STATE_RETRY_SECONDS
        if self.state_ok:
            self._set_state_ok(False)
            if self.on_error is not None and exc is not None:
                self.on_error("state_backend", exc)
        if self._stateless is None:
            self._stateless = FeatureEngine.open(self.engine.config)
        probe = txns.copy()
        probe["apply"] = 0
        features, _ = self._stateless.score(probe)
        decisions = decide(snap, self.policy, features, use_model)
        closed = np.array(
            [self.policy.for_channel(int(c)).fail_mode == "closed" for c in txns["channel"].tolist()], dtype=bool
        )
        decisions.actions[closed] = np.maximum(decisions.actions[closed], CHALLENGE)
        decisions.degraded_reason = "state_unavailable"
        return decisions


def _dry_run_row() -> np.ndarray:
    row = new_batch(1)
    row["event_time_us"] = 1_700_000_000_000_000
    row["account_key"] = 1
    row["txn_type"] = row["channel"] = 1
    row["apply"] = 0
    return row


def decide(snap: Snapshot, policy: ActionPolicy, features: np.ndarray, use_model: np.ndarray) -> Decisions:
    """Rules, model, hybrid score and action for a feature matrix: the part shared by online scoring and backtests."""
    rules = snap.rules
    n = len(features)
    hits = rules.evaluate(features)
    probability = np.zeros(n, dtype=np.float64)
    extra: dict[str, object] = {}
    model = snap.model
    with_model = np.count_nonzero(use_model) if model is not None else 0  # a quarter of any()/all()'s cost
    if model is not None and with_model:
        started = time.perf_counter()
        if with_model == n:
            probability = model.predict(features)
        else:
            probability[use_model] = model.predict(features[use_model])
        extra["model_seconds"] = time.perf_counter() - started
    challenger = snap.challenger.predict(features) if snap.challenger is not None else None
    scores = hybrid_scores(probability, hits, rules.weights, rules.active)
    actions = policy.actions(scores.risk, features[:, _CHANNEL], hit_floors(hits, rules.active, rules.floors))
    return Decisions(
        snapshot=snap,
        features=features,
        hits=hits,
        probability=probability,
        risk=scores.risk,
        rule_share=scores.share,
        rule_evidence=scores.evidence,
        model_points=scores.model_points,
        actions=actions,
        used_model=use_model & (snap.model is not None),
        challenger_probability=challenger,
        extra=extra,
    )


def _merge(snap: Snapshot, n: int, parts: list[tuple[np.ndarray, Decisions]]) -> Decisions:
    first = parts[0][1]

    def alloc(a: np.ndarray) -> np.ndarray:
        return np.empty((n, *a.shape[1:]), dtype=a.dtype)

    out = Decisions(
        snapshot=snap,
        features=alloc(first.features),
        hits=alloc(first.hits),
        probability=alloc(first.probability),
        risk=alloc(first.risk),
        rule_share=alloc(first.rule_share),
        rule_evidence=first.rule_evidence,
        model_points=alloc(first.model_points),
        actions=alloc(first.actions),
        used_model=alloc(first.used_model),
        challenger_probability=alloc(first.challenger_probability)
        if first.challenger_probability is not None
        else None,
    )
    seconds = [d.extra["model_seconds"] for _, d in parts if "model_seconds" in d.extra]
    if seconds:
        out.extra["model_seconds"] = float(sum(seconds))  # type: ignore[arg-type]
    for rows, d in parts:
        out.degraded_reason = out.degraded_reason or d.degraded_reason
        out.features[rows] = d.features
        out.hits[rows] = d.hits
        out.probability[rows] = d.probability
        out.risk[rows] = d.risk
        out.rule_share[rows] = d.rule_share
        out.model_points[rows] = d.model_points
        out.actions[rows] = d.actions
        out.used_model[rows] = d.used_model
        if out.challenger_probability is not None and d.challenger_probability is not None:
            out.challenger_probability[rows] = d.challenger_probability
    return out
