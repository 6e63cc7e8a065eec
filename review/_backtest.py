"""Backtests: replay a labelled transaction file through the service's own features, rules, model and policy.

The file is replayed in event-time order through ``FeatureEngine.replay`` (the online kernels); confirmed-fraud
labels in the file reach the engine as outcomes ``label_delay_days`` after their transaction, as they would
from analysts. Each feature chunk then goes through ``server.decide`` (rules, model, hybrid score, action
policy: the online code, not a copy). Rows before ``start`` only build up account state; rows from ``start``
until ``end`` are scored and reported. A draft rule file is decided on the same feature rows, side by side.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features import FEATURE_INDEX, OUTCOME_DTYPE, FeatureConfig, FeatureEngine, encode_frame
from models import ModelRunner, combine_scores
from review._errors import BacktestError
from review._metrics import flagged_metrics, overlap_pairs, ranking_metrics, rule_table, typology_recall
from rules_engine import RuleSet, hit_cells
from server import ActionPolicy, Snapshot, decide

__all__ = ["BacktestConfig", "BacktestResult", "RuleSetRun", "run_backtest"]

_US_PER_DAY = 86_400_000_000
_ACTION_NAMES = np.array(["", "ALLOW", "REVIEW", "CHALLENGE", "BLOCK"], dtype=object)
_REVIEW = 2
_AMOUNT = FEATURE_INDEX["amount_cny"]
_CHANNEL = FEATURE_INDEX["channel"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestConfig:
    """What to replay and how."""

    start: dt.datetime | None = None  # first event time scored (earlier rows only build state)
    end: dt.datetime | None = None  # event times from here on are left out
    label_delay_days: float = 7.0  # a confirmed-fraud label reaches the engine this long after its transaction
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    chunk_rows: int = 131_072  # rows per replay/decide step (bounds the feature matrix held in memory)
    top_pairs: int = 10  # overlapping rule pairs reported

    def __post_init__(self) -> None:
        if self.label_delay_days < 0:
            raise BacktestError(f"label_delay_days must be >= 0, got {self.label_delay_days}")
        if self.chunk_rows < 1:
            raise BacktestError(f"chunk_rows must be >= 1, got {self.chunk_rows}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise BacktestError(f"{name} must be timezone-aware (e.g. 2026-03-01T00:00:00+08:00 or ...Z)")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise BacktestError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")


@dataclass(slots=True)
class RuleSetRun:
    """The decisions of one rule set over the scored rows."""

    rules: RuleSet
    risk: np.ndarray  # (n,) int32
    actions: np.ndarray  # (n,) int8
    probability: np.ndarray  # (n,) float64
    hits: np.ndarray  # (n, R) uint8, shadow rules included

    @property
    def flagged(self) -> np.ndarray:
        return np.asarray(self.actions >= _REVIEW)


@dataclass(slots=True)
class BacktestResult:
    """Scored rows, the decisions of the live (and draft) rule set, and the report (JSON-ready)."""

    rows: pd.DataFrame  # transaction_id, event_time, account_id, counterparty_id, amount_cny, channel, label, typology
    labelled: bool  # False: the file has no is_fraud column and ``rows.label`` is -1
    live: RuleSetRun
    draft: RuleSetRun | None
    report: dict[str, Any]

    def scores_table(self) -> pa.Table:
        """One row per scored transaction (the columns of scores.csv, see docs/review.md)."""
        columns: dict[str, Any] = {
            "transaction_id": _arrow_text(self.rows["transaction_id"]),
            "event_time": pa.array(self.rows["event_time"].to_numpy(dtype="datetime64[us]"),
                                   type=pa.timestamp("us", tz="UTC")),
            "account_id": _arrow_text(self.rows["account_id"]),
            "counterparty_id": _arrow_text(self.rows["counterparty_id"]),
            "amount_cny": pa.array(self.rows["amount_cny"].to_numpy(), type=pa.float64()),
            "channel": _arrow_text(self.rows["channel"]),
        }
        columns.update(_run_columns(self.live, ""))
        if self.draft is not None:
            columns.update(_run_columns(self.draft, "draft_"))
        labels = self.rows["label"].to_numpy(dtype=np.int8)
        columns["label"] = pa.array(labels, type=pa.int8(), mask=np.full(len(labels), not self.labelled))
        columns["typology"] = _arrow_text(self.rows["typology"])
        return pa.table(columns)

    def write_scores(self, path: Path) -> None:
        """Write scores.csv (or .parquet when the name ends so)."""
        table = self.scores_table()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            pq.write_table(table, path)
            return
        times = pc.strftime(table["event_time"], format="%Y-%m-%dT%H:%M:%S")
        table = table.set_column(table.schema.get_field_index("event_time"), "event_time",
                                 pc.binary_join_element_wise(times, pa.scalar("Z"), ""))
        pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))


def _arrow_text(series: pd.Series) -> pa.Array:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return pa.array(series, from_pandas=True).cast(pa.string())
    return pa.array(series, type=pa.string(), from_pandas=True)


def _hit_strings(hits: np.ndarray, rule_ids: Sequence[str]) -> pa.Array:
    """Per row the ids of the rules that hit, ';'-joined ('' for none), vectorised through Arrow."""
    n = hits.shape[0]
    rows, cols = hit_cells(hits)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    ids = pa.array(np.asarray(rule_ids, dtype=object)[cols].tolist(), type=pa.string())
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), ids), ";")


def _run_columns(run: RuleSetRun, prefix: str) -> dict[str, pa.Array]:
    return {
        f"{prefix}risk": pa.array(run.risk, type=pa.int32()),
        f"{prefix}action": pa.array(_ACTION_NAMES[np.clip(run.actions.astype(np.int64), 0, 4)].tolist(),
                                    type=pa.string()),
        f"{prefix}probability": pa.array(np.round(run.probability, 6), type=pa.float64()),
        f"{prefix}hits": _hit_strings(run.hits, [rule.id for rule in run.rules.rules]),
    }


def _labels(frame: pd.DataFrame) -> np.ndarray | None:
    if "is_fraud" not in frame.columns:
        return None
    values = pd.to_numeric(frame["is_fraud"], errors="coerce").fillna(0).to_numpy()
    return np.asarray(values > 0, dtype=np.int8)


def label_outcomes(frame: pd.DataFrame, txns: np.ndarray, labels: np.ndarray | None,
                   delay_days: float) -> np.ndarray:
    """Confirmed-fraud outcomes for the labelled rows of the file, reported ``delay_days`` after each transaction,
    on the transaction's counterparty (what ReportOutcome records), sorted by reported time."""
    if labels is None or "counterparty_id" not in frame.columns:
        return np.zeros(0, dtype=OUTCOME_DTYPE)
    rows = np.flatnonzero((labels == 1) & (txns["counterparty_key"] != 0))
    out = np.zeros(rows.size, dtype=OUTCOME_DTYPE)
    out["reported_at_us"] = txns["event_time_us"][rows] + round(delay_days * _US_PER_DAY)
    out["counterparty_key"] = txns["counterparty_key"][rows]
    out["is_fraud"] = True
    return out[np.argsort(out["reported_at_us"], kind="stable")]


def _utc_us(when: dt.datetime) -> int:
    return int((when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(microseconds=1))


class _SharedPrediction:
    """Stands in for the ModelRunner when a draft is compared: ``predict`` runs once per feature chunk, and the
    live and draft ``decide`` calls on that chunk share its result (the rules differ, the model input does not)."""

    def __init__(self, model: ModelRunner) -> None:
        self._model = model
        self._last: np.ndarray | None = None
        self._probability = np.zeros(0)

    @property
    def version(self) -> str:
        return self._model.version

    def predict(self, features: np.ndarray) -> np.ndarray:
        if features is not self._last:
            self._probability = self._model.predict(features)
            self._last = features
        return self._probability

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class _Collector:
    """Decisions of one rule set, chunk by chunk."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, policy: ActionPolicy, features: np.ndarray) -> None:
        use_model = np.ones(len(features), dtype=bool)
        d = decide(self.snapshot, policy, features, use_model)
        self.parts.append((d.risk, d.actions, d.probability, d.hits))

    def run(self) -> RuleSetRun:
        r = len(self.snapshot.rules.rules)
        if not self.parts:
            return RuleSetRun(self.snapshot.rules, np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(0),
                              np.zeros((0, r), np.uint8))
        risk, actions, probability, hits = (np.concatenate(p) for p in zip(*self.parts, strict=True))
        return RuleSetRun(self.snapshot.rules, risk, actions, probability, hits)


def run_backtest(
    frame: pd.DataFrame,
    *,
    rules: RuleSet,
    model: ModelRunner | None,
    policy: ActionPolicy,
    config: BacktestConfig | None = None,
    draft_rules: RuleSet | None = None,
    source: str = "",
) -> BacktestResult:
    """Replay ``frame`` (canonical columns, labels optional) and decide every row in the configured time range."""
    config = config or BacktestConfig()
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(timings.get(stage, 0.0) + now - clock, 4)
        clock = now

    if "event_time" not in frame.columns:
        raise BacktestError("the data has no event_time column; load it with models.load_transactions (--mapping)")
    times = pd.to_datetime(frame["event_time"], utc=True)
    if not times.is_monotonic_increasing:
        order = np.argsort(times.to_numpy(), kind="stable")
        frame, times = frame.iloc[order].reset_index(drop=True), times.iloc[order].reset_index(drop=True)
    if config.end is not None:
        keep = int(times.searchsorted(pd.Timestamp(config.end).tz_convert("UTC"), side="left"))
        frame, times = frame.iloc[:keep], times.iloc[:keep]
    try:
        txns = encode_frame(frame, config.feature_config)
    except Exception as exc:
        raise BacktestError(f"cannot encode the data: {exc}") from exc
    first = 0
    if config.start is not None:
        first = int(np.searchsorted(txns["event_time_us"], _utc_us(config.start), side="left"))
    n_total, n_scored = len(txns), len(txns) - first
    if n_scored <= 0:
        raise BacktestError(
            f"no transaction to score: the data has {n_total} rows before {config.end or 'the end'} and none from "
            f"{config.start or 'the start'}; check --from/--to against the data's event times"
        )
    labels_all = _labels(frame)
    outcomes = label_outcomes(frame, txns, labels_all, config.label_delay_days)
    lap("encode")

    running_max = np.maximum.accumulate(txns["event_time_us"])
    positions = np.searchsorted(running_max, outcomes["reported_at_us"], side="left")
    shared = cast(ModelRunner, _SharedPrediction(model)) if model is not None and draft_rules is not None else model
    live = _Collector(Snapshot(rules, shared))
    draft = _Collector(Snapshot(draft_rules, shared)) if draft_rules is not None else None
    engine = FeatureEngine.open(config.feature_config)
    amounts = np.empty(n_scored, dtype=np.float64)
    channels = np.empty(n_scored, dtype=np.int64)
    try:
        cuts = sorted({0, first, *range(0, n_total, config.chunk_rows), n_total})
        for a, b in itertools.pairwise(cuts):
            last = b == n_total
            take = (positions >= a) & ((positions < b) | last)
            features = engine.replay(txns[a:b], outcomes[take])
            lap("replay")
            if a >= first:
                amounts[a - first:b - first] = features[:, _AMOUNT]
                channels[a - first:b - first] = features[:, _CHANNEL]
                live.add(policy, features)
                if draft is not None:
                    draft.add(policy, features)
                lap("decide")
    finally:
        engine.close()
    live_run = live.run()
    draft_run = draft.run() if draft is not None else None

    scored = frame.iloc[first:]
    labels = labels_all[first:] if labels_all is not None else None
    typology = (_strings(scored["typology"]) if "typology" in scored.columns and labels is not None else None)
    rows = pd.DataFrame({
        "transaction_id": _text(scored["transaction_id"]) if "transaction_id" in scored.columns
        else pd.Series(np.arange(first, n_total).astype(str)),
        "event_time": times.iloc[first:].reset_index(drop=True),
        "account_id": _text(scored["account_id"]),
        "counterparty_id": _text(scored["counterparty_id"]) if "counterparty_id" in scored.columns else "",
        "amount_cny": amounts,
        "channel": _channel_names(channels),
        "label": labels if labels is not None else np.full(n_scored, -1, dtype=np.int8),
        "typology": _text(scored["typology"]) if "typology" in scored.columns else "",
    })
    lap("collect")

    report = _report(
        config=config, source=source, n_total=n_total, rows=rows, labels=labels, typology=typology,
        live=live_run, draft=draft_run, model=model, outcomes=len(outcomes),
    )
    lap("metrics")
    elapsed = time.perf_counter() - started
    report["throughput"] = {
        "seconds": round(elapsed, 4),
        "rows_replayed": n_total,
        "rows_scored": n_scored,
        "rows_per_second": round(n_total / elapsed, 1) if elapsed > 0 else None,
        "stages_seconds": timings,
    }
    return BacktestResult(rows=rows, labelled=labels is not None, live=live_run, draft=draft_run, report=report)


def _strings(series: pd.Series) -> np.ndarray:
    """A text column as an object array of str ('' for missing)."""
    return np.asarray(series.fillna("").astype(str).to_numpy(dtype=object))


def _text(series: pd.Series) -> pd.Series:
    """A text column as a pandas string Series ('' for missing), index reset; no copy for string columns."""
    if not pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
        series = series.astype("str")
    if series.hasnans:
        series = series.fillna("")
    return series.reset_index(drop=True)


def _channel_names(codes: np.ndarray) -> pd.Categorical:
    from features import ENUMS

    names = np.full(max(ENUMS["Channel"].values()) + 1, "", dtype=object)
    for name, number in ENUMS["Channel"].items():
        names[number] = name
    return pd.Categorical.from_codes(np.clip(codes, 0, len(names) - 1), categories=list(names))


def _run_report(run: RuleSetRun, labels: np.ndarray | None, typology: np.ndarray | None,
                model: ModelRunner | None, top_pairs: int) -> dict[str, Any]:
    rules = run.rules
    flagged = run.flagged
    # Rules alone score 0 on rows without an active hit; only the others need the (costly) combination.
    active = np.asarray(rules.active, dtype=bool)
    any_active = (np.asarray(run.hits[:, active].any(axis=1)) if active.any()
                  else np.zeros(len(run.risk), dtype=bool))
    rules_only = np.zeros(len(run.risk), dtype=np.float64)
    if any_active.any():
        hit_rows = run.hits[any_active]
        rules_only[any_active], _, _ = combine_scores(np.zeros(len(hit_rows)), hit_rows, rules.weights, rules.active)
    actions = {name: int((run.actions == number).sum()) for number, name in enumerate(_ACTION_NAMES) if name}
    hybrid = {**ranking_metrics(run.risk, labels), **flagged_metrics(flagged, labels)}
    return {
        "ruleset_version": rules.version,
        "source": str(rules.source),
        "rules_count": len(rules.rules),
        "active_rules": int(np.asarray(rules.active).sum()),
        "actions": actions,
        "hybrid": hybrid,
        "model_only": ranking_metrics(run.probability, labels) if model is not None else None,
        "rules_only": {**ranking_metrics(rules_only, labels), **flagged_metrics(any_active, labels)},
        "typologies": typology_recall(flagged, labels, typology),
        "rules": rule_table(run.hits, labels, rules.rules, typology),
        "overlap": overlap_pairs(run.hits, [rule.id for rule in rules.rules], top_pairs),
    }


def _report(*, config: BacktestConfig, source: str, n_total: int, rows: pd.DataFrame, labels: np.ndarray | None,
            typology: np.ndarray | None, live: RuleSetRun, draft: RuleSetRun | None, model: ModelRunner | None,
            outcomes: int) -> dict[str, Any]:
    times = rows["event_time"]
    report: dict[str, Any] = {
        "data": {
            "source": source,
            "rows_in_file_range": n_total,
            "rows_scored": len(rows),
            "first_event_time": times.iloc[0].isoformat() if len(rows) else None,
            "last_event_time": times.iloc[-1].isoformat() if len(rows) else None,
            "from": config.start.isoformat() if config.start else None,
            "to": config.end.isoformat() if config.end else None,
            "labelled": labels is not None,
            "fraud_rows": int(labels.sum()) if labels is not None else None,
            "label_delay_days": config.label_delay_days,
            "outcomes_fed": outcomes,
        },
        "model_version": model.version if model is not None else "",
        "live": _run_report(live, labels, typology, model, config.top_pairs),
    }
    if draft is not None:
        report["draft"] = _run_report(draft, labels, typology, model, config.top_pairs)
        report["compare"] = _compare(live, draft, labels)
    return report


def _rule_key(rule: Any) -> tuple[Any, ...]:
    return (rule.when, float(rule.score), rule.mode, int(rule.action_floor), tuple(sorted(rule.channels)))


def _compare(live: RuleSetRun, draft: RuleSetRun, labels: np.ndarray | None) -> dict[str, Any]:
    """What changes from the live rule set to the draft: rules added, removed, changed; alerts gained and lost."""
    live_rules = {rule.id: rule for rule in live.rules.rules}
    draft_rules = {rule.id: rule for rule in draft.rules.rules}
    changed = sorted(i for i in live_rules.keys() & draft_rules.keys()
                     if _rule_key(live_rules[i]) != _rule_key(draft_rules[i]))
    a, b = live.flagged, draft.flagged
    out: dict[str, Any] = {
        "added": sorted(draft_rules.keys() - live_rules.keys()),
        "removed": sorted(live_rules.keys() - draft_rules.keys()),
        "changed": changed,
        "alerts_live": int(a.sum()),
        "alerts_draft": int(b.sum()),
        "alerts_only_live": int((a & ~b).sum()),
        "alerts_only_draft": int((b & ~a).sum()),
        "actions_changed": int((live.actions != draft.actions).sum()),
    }
    if labels is not None:
        fraud = labels == 1
        out["fraud_caught_only_live"] = int((a & ~b & fraud).sum())
        out["fraud_caught_only_draft"] = int((b & ~a & fraud).sum())
    return out

