"""The alert queue: REVIEW / CHALLENGE / BLOCK decisions become alerts in an embedded SQLite database (WAL).

``AlertSink`` is the DecisionSink the server adds to its pipeline: ``record`` only picks the rows at or above
the alerting action (usually none) and queues copies; a writer thread renders their reasons and inserts them in
one transaction. ``AlertStore`` is what analysts (and the ``outpost alerts`` CLI) use: list and filter, assign,
escalate and close alerts with an outcome. States::

    open ──assign──▶ under_review ──escalate──▶ escalated
      │                  │                          │
      └──────────────────┴──────close(outcome)──────┴──▶ closed

Outcomes reported to the server (``ReportOutcome``) close the alert of that transaction as well, and every
outcome is kept in the ``outcomes`` table as a training label.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from features import ENUMS, FEATURE_INDEX, FEATURE_NAMES, stable_key
from review._errors import AlertError, AlertNotFoundError, AlertStateError
from review._worker import BackgroundWriter, Overflow, WriterStats
from rules_engine import RuleSet, hit_cells, hits_by_row
from server import (
    MIN_MODEL_POINTS,
    REASON_SOURCES,
    Decisions,
    Snapshot,
    max_action,
    ranked_reasons,
    reason_words,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ACTION_NAMES",
    "ALERT_STATES",
    "OUTCOMES",
    "Alert",
    "AlertConfig",
    "AlertEvent",
    "AlertReason",
    "AlertSink",
    "AlertStore",
    "outcome_name",
]

log = structlog.get_logger("outpost.review")

ALERT_STATES = ("open", "under_review", "escalated", "closed")
# Outcome names with the numbers of the proto enum outpost.v1.Outcome.
OUTCOMES: Mapping[str, int] = {
    "confirmed_fraud": 1,
    "false_positive": 2,
    "customer_dissuaded": 3,
    "suspicious_reported": 4,
    "legitimate": 5,
}
_OUTCOME_BY_NUMBER = {number: name for name, number in OUTCOMES.items()}
ACTION_NAMES: Mapping[int, str] = {1: "ALLOW", 2: "REVIEW", 3: "CHALLENGE", 4: "BLOCK"}
_ACTION_NUMBERS = {name: number for number, name in ACTION_NAMES.items()}
_TYPE_NAMES = {number: name for name, number in ENUMS["TransactionType"].items()}
_CHANNEL_NAMES = {number: name for name, number in ENUMS["Channel"].items()}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id INTEGER PRIMARY KEY,
    transaction_id TEXT NOT NULL UNIQUE,
    event_time TEXT NOT NULL,
    account_id TEXT NOT NULL,
    account_key TEXT NOT NULL,
    counterparty_id TEXT NOT NULL,
    counterparty_key TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    amount_cny REAL NOT NULL,
    txn_type TEXT NOT NULL,
    channel TEXT NOT NULL,
    risk INTEGER NOT NULL,
    action TEXT NOT NULL,
    model_probability REAL,
    rule_hits TEXT NOT NULL,
    shadow_hits TEXT NOT NULL,
    reasons TEXT NOT NULL,
    features TEXT NOT NULL,
    ruleset_version TEXT NOT NULL,
    model_version TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'under_review', 'escalated', 'closed')),
    assignee TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, alert_id);
CREATE INDEX IF NOT EXISTS alerts_by_account ON alerts (account_key, event_time);
CREATE TABLE IF NOT EXISTS alert_events (
    event_id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts (alert_id),
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    change TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_by_alert ON alert_events (alert_id, event_id);
CREATE TABLE IF NOT EXISTS outcomes (
    outcome_id INTEGER PRIMARY KEY,
    transaction_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    analyst TEXT NOT NULL,
    note TEXT NOT NULL,
    account_id TEXT NOT NULL,
    counterparty_id TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_by_transaction ON outcomes (transaction_id);
"""
_SCHEMA_VERSION = "1"


def outcome_name(value: int | str) -> str:
    """The outcome's name ('confirmed_fraud', ...) from a proto number or a name in any case; AlertError if unknown."""
    if isinstance(value, int):
        name = _OUTCOME_BY_NUMBER.get(value)
    else:
        text = value.strip().lower().removeprefix("outcome_")
        name = text if text in OUTCOMES else None
    if name is None:
        raise AlertError(f"unknown outcome {value!r}; use one of {', '.join(OUTCOMES)}")
    return name


def _now() -> str:
    return _iso(dt.datetime.now(dt.UTC))


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_us(micros: int) -> str:
    return _iso(dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros))


def _iso_us_many(micros: np.ndarray) -> list[str]:
    """``_iso_us`` of each time (years 1000-9999), formatted by numpy at once: 4 µs a time less."""
    text: list[str] = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us").tolist()
    return [t + "Z" for t in text]


def _parse_time(text: str) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertReason:
    """One reason of an alert, ranked by its points of the risk score (like the reply's reasons)."""

    code: str
    source: str  # "rule" or "model"
    points: float
    typology: str
    message_zh: str
    message_en: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """One change of an alert: who did what, from which state to which."""

    at: dt.datetime
    actor: str
    change: str
    from_state: str
    to_state: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """An alert as stored; ``features`` are the values the decision saw."""

    alert_id: int
    transaction_id: str
    event_time: dt.datetime
    account_id: str
    account_key: str
    counterparty_id: str
    counterparty_key: str
    amount_minor: int
    amount_cny: float
    txn_type: str
    channel: str
    risk: int
    action: str
    model_probability: float | None
    rule_hits: tuple[str, ...]
    shadow_hits: tuple[str, ...]
    reasons: tuple[AlertReason, ...]
    features: Mapping[str, float]
    ruleset_version: str
    model_version: str
    state: str
    assignee: str
    outcome: str
    note: str
    created_at: dt.datetime
    updated_at: dt.datetime
    closed_at: dt.datetime | None

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> Alert:
        reasons = tuple(AlertReason(**r) for r in json.loads(row["reasons"]))
        event_time = _parse_time(row["event_time"])
        created_at = _parse_time(row["created_at"])
        updated_at = _parse_time(row["updated_at"])
        assert event_time is not None and created_at is not None and updated_at is not None
        return cls(
            alert_id=row["alert_id"], transaction_id=row["transaction_id"], event_time=event_time,
            account_id=row["account_id"], account_key=row["account_key"], counterparty_id=row["counterparty_id"],
            counterparty_key=row["counterparty_key"], amount_minor=row["amount_minor"], amount_cny=row["amount_cny"],
            txn_type=row["txn_type"], channel=row["channel"], risk=row["risk"], action=row["action"],
            model_probability=row["model_probability"], rule_hits=tuple(json.loads(row["rule_hits"])),
            shadow_hits=tuple(json.loads(row["shadow_hits"])), reasons=reasons,
            features=json.loads(row["features"]), ruleset_version=row["ruleset_version"],
            model_version=row["model_version"], state=row["state"], assignee=row["assignee"],
            outcome=row["outcome"], note=row["note"], created_at=created_at, updated_at=updated_at,
            closed_at=_parse_time(row["closed_at"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO-8601 strings)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, dt.datetime):
                value = _iso(value)
            elif name == "reasons":
                value = [{f: getattr(r, f) for f in r.__dataclass_fields__} for r in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif name == "features":
                value = dict(value)
            out[name] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertConfig:
    """Which decisions become alerts, and the writer's memory bound."""

    min_action: str = "REVIEW"  # REVIEW, CHALLENGE or BLOCK: the least action that raises an alert
    max_pending_rows: int = 50_000  # alerts queued for the writer at most
    overflow: Overflow = "drop"  # beyond it: drop and count ("drop") or make record() wait ("block")
    linger_seconds: float = 0.2  # alerts reach the queue within this; each write covers many batches

    def __post_init__(self) -> None:
        if self.min_action not in ("REVIEW", "CHALLENGE", "BLOCK"):
            raise AlertError(f"min_action must be REVIEW, CHALLENGE or BLOCK, got {self.min_action!r}")


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the alert database at ``path`` (created with its schema if missing), in WAL mode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise AlertError(f"cannot open the alert database {path}: {exc}; check the path and its permissions") from None
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (_SCHEMA_VERSION,))
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise AlertError(f"{path} is not a usable alert database ({exc}); move it aside or pass another --db") from None
    return conn


@dataclass(slots=True)
class _NewAlerts:
    """Copies of the alerting rows of one decided batch."""

    ids: list[str]
    account_ids: list[str]
    counterparty_ids: list[str]
    txns: np.ndarray
    features: np.ndarray
    hits: np.ndarray
    rule_share: np.ndarray  # a hit of active rule j is worth rule_evidence[j] * rule_share[row] points
    rule_evidence: np.ndarray
    model_points: np.ndarray
    probability: np.ndarray
    used_model: np.ndarray
    risk: np.ndarray
    actions: np.ndarray
    snapshot: Snapshot
    created_at: str
    # Item row -> ModelRunner.explain(), for the rows whose explanation the pipeline worked out already.
    explained: dict[int, list[tuple[str, float]]] = field(default_factory=dict)


@dataclass(slots=True)
class _ReportedOutcome:
    transaction_id: str
    outcome: str
    reported_at: str
    analyst: str
    note: str
    account_id: str
    counterparty_id: str
    source: str


def _texts(values: object, rows: np.ndarray) -> list[str]:
    if values is None:
        return [""] * len(rows)
    seq: Sequence[object] = values  # type: ignore[assignment]  # indexed, not copied: it may be a lazy view
    return [str(seq[i]) for i in rows.tolist()]


class AlertSink:
    """A DecisionSink that turns alerting decisions into alerts in the SQLite database at ``path``.

    Raw account and counterparty ids (shown to analysts; the feature state only has keys) come from
    ``decisions.extra["account_ids"]`` / ``["counterparty_ids"]`` (row-aligned sequences of str) when the server
    sets them, or from the ``account_ids=`` / ``counterparty_ids=`` arguments of ``record``.
    """

    def __init__(self, path: Path, config: AlertConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or AlertConfig()
        self._min_action = _ACTION_NUMBERS[self.config.min_action]
        connect(self.path).close()  # fail now, on the caller's thread, if the database is unusable
        self._conn: sqlite3.Connection | None = None
        self._writer: BackgroundWriter[_NewAlerts | _ReportedOutcome] = BackgroundWriter(
            "alerts", self._consume, max_pending_rows=self.config.max_pending_rows, overflow=self.config.overflow,
            linger_seconds=self.config.linger_seconds,
        )

    # -- DecisionSink ------------------------------------------------------------------------------------------
    def record(
        self,
        txn_ids: Sequence[str],
        txns: np.ndarray,
        decisions: Decisions,
        *,
        account_ids: Sequence[str] | None = None,
        counterparty_ids: Sequence[str] | None = None,
    ) -> None:
        """Queue the rows whose action is at or above ``min_action`` (dry runs never alert)."""
        if max_action(decisions.actions) < self._min_action:  # the usual case, answered as cheaply as possible
            return
        rows = np.flatnonzero((decisions.actions >= self._min_action) & (txns["apply"] != 0))
        if not rows.size:
            return
        account_ids = account_ids if account_ids is not None else decisions.extra.get("account_ids")  # type: ignore[assignment]
        if counterparty_ids is None:
            counterparty_ids = decisions.extra.get("counterparty_ids")  # type: ignore[assignment]
        picked = rows.tolist()
        done = decisions.explanations
        item = _NewAlerts(
            ids=[txn_ids[i] for i in picked],
            account_ids=_texts(account_ids, rows),
            counterparty_ids=_texts(counterparty_ids, rows),
            txns=txns.take(rows),
            features=decisions.features[rows],
            hits=decisions.hits[rows],
            rule_share=decisions.rule_share[rows],
            rule_evidence=decisions.rule_evidence,
            model_points=decisions.model_points[rows],
            probability=decisions.probability[rows],
            used_model=decisions.used_model[rows],
            risk=decisions.risk[rows],
            actions=decisions.actions[rows],
            snapshot=decisions.snapshot,
            created_at=_now(),
            explained={k: done[i] for k, i in enumerate(picked) if i in done} if done else {},
        )
        self._writer.submit(item, len(rows))

    def record_outcome(self, request: Any) -> None:
        """Queue an outcome report (a ``ReportOutcomeRequest`` or anything with its fields) for the store."""
        try:
            outcome = outcome_name(int(request.outcome))
        except AlertError:  # called inside the ReportOutcome RPC: never fail it, the label is already recorded
            log.warning("alert_outcome_ignored", transaction_id=request.transaction_id, outcome=int(request.outcome))
            return
        stamp = request.reported_at
        reported = _iso_us(stamp.seconds * 1_000_000 + stamp.nanos // 1000) if stamp.seconds or stamp.nanos else _now()
        item = _ReportedOutcome(
            transaction_id=request.transaction_id, outcome=outcome, reported_at=reported,
            analyst=request.analyst, note=request.note, account_id=request.account_id,
            counterparty_id=request.counterparty_id, source="ReportOutcome",
        )
        self._writer.submit(item, 1)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write everything queued so far; True when done within ``timeout``."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        self._writer.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stats(self) -> WriterStats:
        return self._writer.stats()

    # -- the writer thread -------------------------------------------------------------------------------------
    def _consume(self, items: list[_NewAlerts | _ReportedOutcome]) -> None:
        if self._conn is None:
            self._conn = connect(self.path)
        rows: list[tuple[Any, ...]] = []
        for item in items:
            if isinstance(item, _NewAlerts):
                rows.extend(_alert_rows(item))
        store = AlertStore(self._conn, self.path)
        with store.transaction():
            if rows:
                self._conn.executemany(_INSERT, rows)
            for item in items:
                if isinstance(item, _ReportedOutcome):
                    store.record_outcome(
                        item.transaction_id, item.outcome, reported_at=item.reported_at, analyst=item.analyst,
                        note=item.note, account_id=item.account_id, counterparty_id=item.counterparty_id,
                        source=item.source,
                    )


_INSERT_COLUMNS = (
    "transaction_id", "event_time", "account_id", "account_key", "counterparty_id", "counterparty_key",
    "amount_minor", "amount_cny", "txn_type", "channel", "risk", "action", "model_probability", "rule_hits",
    "shadow_hits", "reasons", "features", "ruleset_version", "model_version", "state", "created_at", "updated_at",
)
_INSERT = (
    f"INSERT OR IGNORE INTO alerts ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _INSERT_COLUMNS)})"
)
_AMOUNT = FEATURE_INDEX["amount_cny"]


def _wants_model_reasons(item: _NewAlerts, i: int) -> bool:
    return item.snapshot.model is not None and bool(item.used_model[i]) and float(
        item.model_points[i]) >= MIN_MODEL_POINTS


def _model_explanations(item: _NewAlerts) -> dict[int, list[tuple[str, float]]]:
    """Model explanations of the item's rows that show model reasons (row -> explain()): those the pipeline worked
    out, and the others from one tree walk."""
    model = item.snapshot.model
    done = item.explained
    rows = [i for i in range(len(item.ids)) if i not in done and _wants_model_reasons(item, i)]
    if model is None or not rows:
        return done
    return {**done, **dict(zip(rows, model.explain_rows(item.features[rows]), strict=True))}


def _reasons(
    item: _NewAlerts, i: int, live: list[int], explained: dict[int, list[tuple[str, float]]] | None = None
) -> list[dict[str, Any]]:
    """Row ``i``'s reasons, as the reply ranks them (``server.ranked_reasons``) and in both languages; ``live`` are
    the columns of the active rules it hit."""
    snap = item.snapshot
    rules = snap.rules
    x = item.features[i]
    contributions = None
    if snap.model is not None and _wants_model_reasons(item, i):
        contributions = explained[i] if explained is not None and i in explained else snap.model.explain(x)
    reasons = ranked_reasons(
        rules, live, item.rule_evidence, float(item.rule_share[i]), float(item.model_points[i]), contributions
    )
    out: list[dict[str, Any]] = []
    for reason in reasons:
        zh, en = reason_words(rules, x, reason)
        out.append({
            "code": reason[1], "source": REASON_SOURCES[reason[2]], "points": round(reason[0], 2),
            "typology": reason[3], "message_zh": zh, "message_en": en,
        })
    return out


def _alert_rows(item: _NewAlerts) -> Iterator[tuple[Any, ...]]:
    rules = item.snapshot.rules
    quoted = _quoted_ids(rules)
    active = rules.active
    try:
        explained = _model_explanations(item)
    except Exception as exc:  # as below: fall back to one explanation per row
        log.error("alert_explanations_failed", rows=len(item.ids), error=str(exc))
        explained = {}
    # Columns as Python lists once per item: reading a structured record's fields one by one cost more.
    txns = item.txns
    event_times = _iso_us_many(txns["event_time_us"])
    account_keys = txns["account_key"].tolist()
    counterparty_keys = txns["counterparty_key"].tolist()
    amounts = txns["amount_minor"].tolist()
    types = txns["txn_type"].tolist()
    channels = txns["channel"].tolist()
    amount_cny = item.features[:, _AMOUNT].tolist()
    risks = item.risk.tolist()
    actions = item.actions.tolist()
    probabilities = item.probability.tolist()
    used_model = item.used_model.tolist()
    features = _features_json(item.features)
    model_version = item.snapshot.model_version
    hits_of = hits_by_row(*hit_cells(item.hits))  # shadow hits too: the alert stores them
    for i, txn_id in enumerate(item.ids):
        hit_cols = hits_of.get(i, [])
        live = [j for j in hit_cols if active[j]]
        try:
            reasons = _reasons(item, i, live, explained)
        except Exception as exc:  # a reason template or explanation failing must not lose the alert
            log.error("alert_reasons_failed", transaction_id=txn_id, error=str(exc))
            reasons = []
        action = actions[i]
        yield (
            txn_id,
            event_times[i],
            item.account_ids[i],
            f"{account_keys[i]:016x}",
            item.counterparty_ids[i],
            f"{counterparty_keys[i]:016x}" if counterparty_keys[i] else "",
            amounts[i],
            amount_cny[i],
            _TYPE_NAMES.get(types[i], ""),
            _CHANNEL_NAMES.get(channels[i], ""),
            risks[i],
            ACTION_NAMES.get(action, str(action)),
            probabilities[i] if used_model[i] else None,
            _json_ids(quoted, live),
            _json_ids(quoted, [j for j in hit_cols if not active[j]]),
            _REASONS_JSON(reasons),
            features[i],
            rules.version,
            model_version if used_model[i] else "",
            "open",
            item.created_at,
            item.created_at,
        )


_QUOTED: tuple[object, list[str]] = (None, [])  # the last rule set seen, and its rule ids as JSON strings


def _quoted_ids(rules: RuleSet) -> list[str]:
    """``json.dumps(rule.id)`` of each rule of ``rules``, worked out once per rule set (alerts join them in lists)."""
    global _QUOTED
    seen, quoted = _QUOTED
    if seen is not rules:
        quoted = [json.dumps(rule.id) for rule in rules.rules]
        _QUOTED = (rules, quoted)
    return quoted


def _json_ids(quoted: list[str], columns: list[int]) -> str:
    """``json.dumps`` of the ids of the rules in ``columns``, joined from their JSON strings (``_quoted_ids``)."""
    return "[" + ", ".join([quoted[j] for j in columns]) + "]"


# ``json.dumps(reasons, ensure_ascii=False)`` without building an encoder per call (a fifth of its cost).
_REASONS_JSON = json.JSONEncoder(ensure_ascii=False).encode

# ``json.dumps`` of a row's {feature name: value} dict, as one %-format per row: json writes a finite float as
# its repr, which is what %r writes. Rows holding NaN or an infinity go through json.dumps itself.
_FEATURES_FORMAT = "{" + ", ".join(f"{json.dumps(name)}: %r" for name in FEATURE_NAMES) + "}"


def _features_json(features: np.ndarray) -> list[str]:
    """Each row of an (n, F) feature matrix as the JSON object ``json.dumps(dict(zip(FEATURE_NAMES, row)))``."""
    finite = np.isfinite(features).all(axis=1).tolist()
    fmt = _FEATURES_FORMAT
    return [
        fmt % tuple(row) if ok else json.dumps(dict(zip(FEATURE_NAMES, row, strict=True)))
        for row, ok in zip(features.tolist(), finite, strict=True)
    ]


@dataclass
class AlertStore:
    """Analysts' access to the alert database. Open with ``AlertStore.open(path)``; use as a context manager."""

    conn: sqlite3.Connection
    path: Path
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _depth: int = 0

    @classmethod
    def open(cls, path: Path) -> AlertStore:
        path = Path(path)
        return cls(connect(path), path)

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.disconnect()

    def disconnect(self) -> None:
        """Close the database connection."""
        self.conn.close()

    # -- queries -----------------------------------------------------------------------------------------------
    def list_alerts(
        self,
        *,
        state: str | Sequence[str] | None = None,
        assignee: str | None = None,
        account: str | None = None,
        action: str | None = None,
        min_risk: int | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        order: str = "newest",
        limit: int | None = 100,
    ) -> list[Alert]:
        """Alerts matching every filter given. ``account`` matches the raw account id or its 16-hex key;
        ``since``/``until`` bound the event time; ``order`` is "newest", "oldest" or "risk"."""
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            states = [state] if isinstance(state, str) else list(state)
            for s in states:
                _check_state(s)
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(states)
        if assignee is not None:
            where.append("assignee = ?")
            params.append(assignee)
        if account is not None:
            where.append("(account_id = ? OR account_key = ? OR account_key = ?)")
            params.extend([account, account.lower(), f"{stable_key(account):016x}"])
        if action is not None:
            if action.upper() not in _ACTION_NUMBERS:
                raise AlertError(f"unknown action {action!r}; use REVIEW, CHALLENGE or BLOCK")
            where.append("action = ?")
            params.append(action.upper())
        if min_risk is not None:
            where.append("risk >= ?")
            params.append(int(min_risk))
        if since is not None:
            where.append("event_time >= ?")
            params.append(_iso(since))
        if until is not None:
            where.append("event_time < ?")
            params.append(_iso(until))
        orders = {"newest": "alert_id DESC", "oldest": "alert_id ASC", "risk": "risk DESC, alert_id DESC"}
        if order not in orders:
            raise AlertError(f"unknown order {order!r}; use one of {', '.join(orders)}")
        sql = "SELECT * FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {orders[order]}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [Alert._from_row(row) for row in self._query(sql, params)]

    def get(self, alert_id: int) -> Alert:
        rows = self._query("SELECT * FROM alerts WHERE alert_id = ?", [alert_id])
        if not rows:
            raise AlertNotFoundError(f"no alert {alert_id}; list alerts with `outpost alerts list`", alert_id=alert_id)
        return Alert._from_row(rows[0])

    def find(self, transaction_id: str) -> Alert | None:
        """The alert of a transaction, or None."""
        rows = self._query("SELECT * FROM alerts WHERE transaction_id = ?", [transaction_id])
        return Alert._from_row(rows[0]) if rows else None

    def history(self, alert_id: int) -> list[AlertEvent]:
        """Every change of the alert, oldest first."""
        self.get(alert_id)
        rows = self._query("SELECT * FROM alert_events WHERE alert_id = ? ORDER BY event_id", [alert_id])
        events = []
        for row in rows:
            at = _parse_time(row["at"])
            assert at is not None
            events.append(AlertEvent(at=at, actor=row["actor"], change=row["change"], from_state=row["from_state"],
                                     to_state=row["to_state"], detail=row["detail"]))
        return events

    def counts(self) -> dict[str, int]:
        """Number of alerts per state (every state present, 0 when none)."""
        out = dict.fromkeys(ALERT_STATES, 0)
        for row in self._query("SELECT state, COUNT(*) AS n FROM alerts GROUP BY state", []):
            out[row["state"]] = row["n"]
        return out

    def outcomes(self) -> pd.DataFrame:
        """Every outcome reported (newest last): the labels for training and backtests."""
        import pandas as pd  # only analysts' reads need pandas; a serving process never imports it

        with self._lock:
            frame = pd.read_sql_query("SELECT * FROM outcomes ORDER BY outcome_id", self.conn)
        for column in ("reported_at", "received_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    # -- changes -----------------------------------------------------------------------------------------------
    def assign(self, alert_id: int, assignee: str, *, actor: str = "", note: str = "") -> Alert:
        """Give the alert to ``assignee``; an open alert goes under review (an escalated one stays escalated)."""
        if not assignee.strip():
            raise AlertError("assignee must be a non-empty name")
        with self.transaction():
            alert = self.get(alert_id)
            if alert.state == "closed":
                raise AlertStateError(
                    f"alert {alert_id} is closed (outcome {alert.outcome}); closed alerts cannot be reassigned",
                    alert_id=alert_id, state=alert.state, requested="assign",
                )
            to_state = "under_review" if alert.state == "open" else alert.state
            self._change(alert, to_state, actor or assignee, "assign", f"assignee={assignee}" + _detail(note),
                         assignee=assignee, note=note or alert.note)
        return self.get(alert_id)

    def escalate(self, alert_id: int, *, actor: str, note: str = "") -> Alert:
        """Escalate an open or under-review alert (e.g. to a senior investigator or compliance)."""
        with self.transaction():
            alert = self.get(alert_id)
            if alert.state not in ("open", "under_review"):
                raise AlertStateError(
                    f"alert {alert_id} is {alert.state}; only open or under_review alerts can be escalated",
                    alert_id=alert_id, state=alert.state, requested="escalate",
                )
            self._change(alert, "escalated", actor, "escalate", note, assignee=alert.assignee, note=note or alert.note)
        return self.get(alert_id)

    def close(self, alert_id: int, outcome: str, *, actor: str, note: str = "",
              reported_at: dt.datetime | None = None) -> Alert:
        """Close the alert with an outcome, and keep the outcome as a label (``outcomes``)."""
        name = outcome_name(outcome)
        with self.transaction():
            alert = self.get(alert_id)
            if alert.state == "closed":
                raise AlertStateError(
                    f"alert {alert_id} is already closed (outcome {alert.outcome})",
                    alert_id=alert_id, state=alert.state, requested="close",
                )
            self._change(alert, "closed", actor, "close", f"outcome={name}" + _detail(note),
                         assignee=alert.assignee, note=note or alert.note, outcome=name)
            self._insert_outcome(alert.transaction_id, name, _iso(reported_at) if reported_at else _now(), actor,
                                 note, alert.account_id, alert.counterparty_id, "alerts close")
        return self.get(alert_id)

    def record_outcome(
        self,
        transaction_id: str,
        outcome: str,
        *,
        reported_at: str | dt.datetime,
        analyst: str = "",
        note: str = "",
        account_id: str = "",
        counterparty_id: str = "",
        source: str = "",
    ) -> Alert | None:
        """Keep an outcome reported for a transaction; closes its alert (if any) with that outcome.

        An alert closed already keeps its state; its outcome becomes the latest one reported. Returns the alert.
        """
        name = outcome_name(outcome)
        reported = reported_at if isinstance(reported_at, str) else _iso(reported_at)
        with self.transaction():
            alert = self.find(transaction_id)
            duplicate = self._query(
                "SELECT 1 FROM outcomes WHERE transaction_id = ? AND outcome = ? AND reported_at = ?",
                [transaction_id, name, reported],
            )
            if not duplicate:  # the CLI both closes the alert and reports to the server, which reports back
                self._insert_outcome(transaction_id, name, reported, analyst, note,
                                     account_id or (alert.account_id if alert else ""),
                                     counterparty_id or (alert.counterparty_id if alert else ""), source)
            if alert is not None:
                actor = analyst or source or "outcome"
                if alert.state != "closed":
                    self._change(alert, "closed", actor, "outcome", f"outcome={name}" + _detail(note),
                                 assignee=alert.assignee, note=note or alert.note, outcome=name)
                elif alert.outcome != name:
                    self._change(alert, "closed", actor, "outcome", f"outcome={alert.outcome}->{name}" + _detail(note),
                                 assignee=alert.assignee, note=alert.note, outcome=name)
        return self.find(transaction_id)

    # -- machinery ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE), nestable."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._execute("BEGIN IMMEDIATE", [])
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self.conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._execute("COMMIT", [])

    def _change(self, alert: Alert, to_state: str, actor: str, change: str, detail: str, *, assignee: str,
                note: str, outcome: str | None = None) -> None:
        now = _now()
        closed_at = now if to_state == "closed" and alert.state != "closed" else (
            _iso(alert.closed_at) if alert.closed_at else "")
        self._execute(
            "UPDATE alerts SET state = ?, assignee = ?, note = ?, outcome = ?, updated_at = ?, closed_at = ? "
            "WHERE alert_id = ?",
            [to_state, assignee, note, outcome if outcome is not None else alert.outcome, now, closed_at,
             alert.alert_id],
        )
        self._execute(
            "INSERT INTO alert_events (alert_id, at, actor, change, from_state, to_state, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [alert.alert_id, now, actor or "unknown", change, alert.state, to_state, detail],
        )

    def _insert_outcome(self, transaction_id: str, outcome: str, reported_at: str, analyst: str, note: str,
                        account_id: str, counterparty_id: str, source: str) -> None:
        self._execute(
            "INSERT INTO outcomes (transaction_id, outcome, reported_at, analyst, note, account_id, counterparty_id, "
            "source, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [transaction_id, outcome, reported_at, analyst, note, account_id, counterparty_id, source, _now()],
        )

    def _query(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise AlertError(f"alert database {self.path}: {exc}") from None

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        with self._lock:
            try:
                self.conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise AlertError(f"alert database {self.path}: {exc}") from None


def _detail(note: str) -> str:
    return f"; note={note}" if note else ""


def _check_state(state: str) -> None:
    if state not in ALERT_STATES:
        raise AlertError(f"unknown alert state {state!r}; use one of {', '.join(ALERT_STATES)}")
