"""The decision log: every scored transaction, appended off the hot path, readable with pandas.

Local files (the embedded default): the writer thread appends Arrow IPC stream messages to one active segment
(``.active-<opened>-<pid>.arrows``, hidden from dataset readers), flushed once per write (fsynced at most once a
second), and rotates it by size or age into an immutable Parquet part ``decisions-<opened>-<pid>-<seq>.parquet``.
A segment left behind by a crash is converted on the next start, keeping every complete message. With several replicas,
``RedisDecisionLog`` appends the same record batches to a Redis Stream (XADD with ``MAXLEN ~``).
``read_decisions`` and ``read_decision_stream`` return one pandas DataFrame; docs/review.md lists the columns.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from features import ENUMS, FEATURE_NAMES, TXN_DTYPE, stable_key
from review._errors import DecisionLogError
from review._worker import BackgroundWriter, Overflow, WriterStats
from rules_engine import hit_cells
from server import Decisions

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DECISION_SCHEMA",
    "FORMAT_NAME",
    "DecisionLog",
    "DecisionLogConfig",
    "RedisDecisionLog",
    "account_key",
    "decision_batches",
    "key_hex",
    "read_decision_stream",
    "read_decisions",
]

log = structlog.get_logger("outpost.review")

FORMAT_NAME = "outpost.decisions/1"
FEATURE_PREFIX = "f_"

_ACTION_NAMES = np.array(["", "ALLOW", "REVIEW", "CHALLENGE", "BLOCK"], dtype=object)


def _enum_names(enum: str) -> np.ndarray:
    values = ENUMS[enum]
    names = np.full(max(values.values()) + 1, "", dtype=object)
    for name, number in values.items():
        names[number] = name
    return names


_TYPE_NAMES = _enum_names("TransactionType")
_CHANNEL_NAMES = _enum_names("Channel")

_TS = pa.timestamp("us", tz="UTC")
DECISION_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string()),
        pa.field("event_time", _TS),
        pa.field("account_key", pa.string()),
        pa.field("counterparty_key", pa.string()),
        pa.field("amount_minor", pa.int64()),
        pa.field("amount_fen", pa.int64()),
        pa.field("txn_type", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("dry_run", pa.bool_()),
        pa.field("risk", pa.int32()),
        pa.field("action", pa.string()),
        pa.field("model_probability", pa.float64()),
        pa.field("challenger_probability", pa.float64()),
        pa.field("rule_hits", pa.list_(pa.string())),
        pa.field("shadow_hits", pa.list_(pa.string())),
        pa.field("degraded", pa.bool_()),
        pa.field("ruleset_version", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("challenger_version", pa.string()),
        pa.field("latency_us", pa.int64()),
        pa.field("logged_at", _TS),
        *(pa.field(FEATURE_PREFIX + name, pa.float64()) for name in FEATURE_NAMES),
    ],
    metadata={"format": FORMAT_NAME},
)


def account_key(account_id: str) -> str:
    """The 16-hex key under which the decision log and the alerts store an account (or counterparty) id."""
    return f"{stable_key(account_id):016x}"


def key_hex(keys: np.ndarray) -> pa.Array:
    """64-bit keys as 16 lowercase hex digits (``f"{key:016x}"``), vectorised; '' for key 0 (absent)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    text = np.frombuffer(keys.astype(">u8").tobytes().hex().encode("ascii"), dtype="S16")
    text = np.where(keys == 0, b"", text)
    return pa.array(text, type=pa.binary()).cast(pa.string())


@dataclass(slots=True)
class _Scored:
    """Copies of one decided batch, made on the hot path and serialised in the writer thread."""

    ids: list[str]
    txns: np.ndarray
    features: np.ndarray
    hits: np.ndarray
    probability: np.ndarray
    challenger: np.ndarray | None
    risk: np.ndarray
    actions: np.ndarray
    used_model: np.ndarray
    rule_ids: np.ndarray  # object array of rule ids, column order of ``hits``
    active: np.ndarray  # bool per rule
    ruleset_version: str
    model_version: str
    challenger_version: str
    logged_us: int
    latency_us: np.ndarray | None


class _RuleCache:
    """Rule ids and active flags of the last rule set seen, so record() does not rebuild them per batch."""

    def __init__(self) -> None:
        self._version = ""
        self._ids = np.empty(0, dtype=object)
        self._active = np.empty(0, dtype=bool)

    def get(self, decisions: Decisions) -> tuple[np.ndarray, np.ndarray]:
        rules = decisions.snapshot.rules
        if rules.version != self._version or len(self._ids) != decisions.hits.shape[1]:
            self._ids = np.array([rule.id for rule in rules.rules], dtype=object)
            self._active = np.asarray(rules.active, dtype=bool).copy()
            self._version = rules.version
        return self._ids, self._active


def _latency(decisions: Decisions, n: int) -> np.ndarray | None:
    value = decisions.extra.get("latency_us")
    if value is None:
        return None
    array = np.asarray(value, dtype=np.int64)
    return np.full(n, int(array), dtype=np.int64) if array.ndim == 0 else array.copy()


def _capture(txn_ids: Sequence[str], txns: np.ndarray, decisions: Decisions, cache: _RuleCache) -> _Scored:
    snap = decisions.snapshot
    rule_ids, active = cache.get(decisions)
    challenger = decisions.challenger_probability
    return _Scored(
        ids=list(txn_ids),
        txns=np.frombuffer(txns.tobytes(), dtype=txns.dtype),  # 15x cheaper than copy() for this aligned dtype
        features=decisions.features.copy(),
        hits=decisions.hits.copy(),
        probability=decisions.probability.copy(),
        challenger=challenger.copy() if challenger is not None else None,
        risk=decisions.risk.copy(),
        actions=decisions.actions.copy(),
        used_model=decisions.used_model.copy(),
        rule_ids=rule_ids,
        active=active,
        ruleset_version=snap.rules.version,
        model_version=snap.model_version,
        challenger_version=snap.challenger.version if snap.challenger is not None else "",
        logged_us=time.time_ns() // 1000,
        latency_us=_latency(decisions, len(txns)),
    )


def _names(names: np.ndarray, codes: np.ndarray) -> pa.Array:
    """``names[codes]`` as an Arrow string array, gathered in Arrow (no Python string per row)."""
    return pa.array(names.tolist(), type=pa.string()).take(pa.array(codes, type=pa.int64()))


def _hit_lists(hits: np.ndarray, active: np.ndarray, rule_ids: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Per row, the ids of the active rules and of the shadow rules it hit, from one scan of the hit matrix."""
    rows, cols = hit_cells(hits)  # row-major: each row's rules in column order
    live = active[cols]
    n = hits.shape[0]
    return _lists(n, rows[live], cols[live], rule_ids), _lists(n, rows[~live], cols[~live], rule_ids)


def _lists(n: int, rows: np.ndarray, cols: np.ndarray, rule_ids: np.ndarray) -> pa.Array:
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), _names(rule_ids, cols))


def _repeat(values: list[str], counts: list[int]) -> pa.Array:
    if len(set(values)) == 1:
        return pa.repeat(pa.scalar(values[0], type=pa.string()), sum(counts))
    return pa.array(np.repeat(np.array(values, dtype=object), counts).tolist(), type=pa.string())


def _warm_conversion() -> None:
    """Turn one made-up decision into a record batch, and drop it: done when a decision log opens.

    pyarrow imports pandas at its first array (0.15 s here, holding the GIL and the import lock). Left to the
    writer thread's first write, that import ran while the first calls were served, and a fresh server answered
    its first few hundred calls in up to 200 ms instead of 2."""
    n_features = len(FEATURE_NAMES)
    _decision_batch([_Scored(
        ids=["warm-up"], txns=np.zeros(1, dtype=TXN_DTYPE), features=np.zeros((1, n_features)),
        hits=np.ones((1, 1), dtype=np.uint8), probability=np.zeros(1), challenger=np.zeros(1),
        risk=np.zeros(1, dtype=np.int32), actions=np.zeros(1, dtype=np.int8), used_model=np.ones(1, dtype=bool),
        rule_ids=np.array(["warm-up"], dtype=object), active=np.ones(1, dtype=bool), ruleset_version="",
        model_version="", challenger_version="", logged_us=0, latency_us=np.zeros(1, dtype=np.int64),
    )])


def _same_rules(a: _Scored, b: _Scored) -> bool:
    return a.ruleset_version == b.ruleset_version and a.hits.shape[1] == b.hits.shape[1]


def decision_batches(items: list[_Scored]) -> list[pa.RecordBatch]:
    """Record batches in ``DECISION_SCHEMA`` for captured batches, one per run of batches with the same rule set."""
    out: list[pa.RecordBatch] = []
    start = 0
    for i in range(1, len(items) + 1):
        if i == len(items) or not _same_rules(items[start], items[i]):
            out.append(_decision_batch(items[start:i]))
            start = i
    return out


def _decision_batch(items: list[_Scored]) -> pa.RecordBatch:
    first = items[0]
    if len(items) == 1:
        txns, hits = first.txns, first.hits
        probability, risk, actions, used_model = first.probability, first.risk, first.actions, first.used_model
        ids = first.ids
    else:
        # Joining bytes: np.concatenate promotes this structured dtype field by field, per array (slow).
        txns = np.frombuffer(b"".join(s.txns.tobytes() for s in items), dtype=first.txns.dtype)
        hits = np.concatenate([s.hits for s in items])
        probability = np.concatenate([s.probability for s in items])
        risk = np.concatenate([s.risk for s in items])
        actions = np.concatenate([s.actions for s in items])
        used_model = np.concatenate([s.used_model for s in items])
        ids = [txn_id for s in items for txn_id in s.ids]
    n = len(txns)
    counts = [len(s.txns) for s in items]
    if all(s.challenger is None for s in items):
        challenger = pa.nulls(n, type=pa.float64())
    else:
        values = np.concatenate([s.challenger if s.challenger is not None else np.full(len(s.txns), np.nan)
                                 for s in items])
        challenger = pa.array(values, type=pa.float64(), from_pandas=True)
    if all(s.latency_us is None for s in items):
        latency = pa.nulls(n, type=pa.int64())
    else:
        lat = np.concatenate([s.latency_us if s.latency_us is not None else np.full(len(s.txns), -1) for s in items])
        latency = pa.array(lat, type=pa.int64(), mask=lat < 0)
    types = np.clip(txns["txn_type"].astype(np.int64), 0, len(_TYPE_NAMES) - 1)
    channels = np.clip(txns["channel"].astype(np.int64), 0, len(_CHANNEL_NAMES) - 1)
    action_codes = np.clip(actions.astype(np.int64), 0, len(_ACTION_NAMES) - 1)
    columns: list[pa.Array] = [
        pa.array(ids, type=pa.string()),
        pa.array(txns["event_time_us"], type=_TS),
        key_hex(txns["account_key"]),
        key_hex(txns["counterparty_key"]),
        pa.array(txns["amount_minor"], type=pa.int64()),
        pa.array(txns["amount_fen"], type=pa.int64()),
        _names(_TYPE_NAMES, types),
        _names(_CHANNEL_NAMES, channels),
        pa.array(txns["apply"] == 0, type=pa.bool_()),
        pa.array(risk, type=pa.int32()),
        _names(_ACTION_NAMES, action_codes),
        pa.array(probability, type=pa.float64(), mask=~used_model),
        challenger,
        *_hit_lists(hits, first.active, first.rule_ids),
        pa.array(~used_model, type=pa.bool_()),
        _repeat([s.ruleset_version for s in items], counts),
        _repeat([s.model_version for s in items], counts),
        _repeat([s.challenger_version for s in items], counts),
        latency,
        pa.array(np.repeat(np.array([s.logged_us for s in items], dtype=np.int64), counts), type=_TS),
    ]
    # Features by column, each then one contiguous row of by_column. Transposing item by item keeps each copy
    # within the caches: one transpose of the joined matrix was 4x slower per row.
    by_column = np.empty((first.features.shape[1], n), dtype=np.float64)
    offset = 0
    for s in items:
        by_column[:, offset : offset + len(s.features)] = s.features.T
        offset += len(s.features)
    columns.extend(pa.array(by_column[j], type=pa.float64()) for j in range(by_column.shape[0]))
    return pa.RecordBatch.from_arrays(columns, schema=DECISION_SCHEMA)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionLogConfig:
    """How the decision log writes: rotation, durability and the memory bound of its queue."""

    max_segment_bytes: int = 64 * 1024 * 1024  # rotate the active segment beyond this size
    max_segment_seconds: float = 3600.0  # ... or when it is older than this (wall clock)
    # fsync the active segment at most this often (0: after every write; None: only when sealing). Every write
    # reaches the OS at once (a process crash loses nothing); the interval bounds what a power loss can take,
    # and keeps the decision log's fsyncs from queueing in front of the state log's, which acknowledge scores.
    fsync_interval_seconds: float | None = 1.0
    linger_seconds: float = 0.2  # the writer waits this long between writes so that writes cover many batches
    max_pending_rows: int = 100_000  # rows queued for the writer at most (about 600 bytes each: ~60 MB)
    overflow: Overflow = "drop"  # beyond max_pending_rows: drop and count ("drop") or make record() wait ("block")
    retain_bytes: int | None = None  # delete the oldest Parquet parts once all parts exceed this; None keeps all
    compression: str = "zstd"

    def __post_init__(self) -> None:
        if self.max_segment_bytes < 4096:
            raise DecisionLogError(f"max_segment_bytes={self.max_segment_bytes} is too small: use at least 4096")
        if self.max_segment_seconds <= 0:
            raise DecisionLogError(f"max_segment_seconds must be > 0, got {self.max_segment_seconds}")
        if self.max_pending_rows < 1:
            raise DecisionLogError(f"max_pending_rows must be >= 1, got {self.max_pending_rows}")
        if self.overflow not in ("drop", "block"):
            raise DecisionLogError(f'overflow must be "drop" or "block", got {self.overflow!r}')


_PART = re.compile(r"^decisions-(\d{8}T\d{12}Z)-(\d+)-(\d+)\.parquet$")
_ACTIVE = re.compile(r"^\.active-(\d{8}T\d{12}Z)-(\d+)-(\d+)\.arrows$")


def _stamp() -> str:
    now = time.time_ns() // 1000
    seconds, micros = divmod(now, 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f"{micros:06d}Z"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_stream(path: Path) -> tuple[list[pa.RecordBatch], bool]:
    """Every complete record batch of an Arrow IPC stream file (copied into memory), and whether it ended cleanly."""
    try:
        with pa.OSFile(str(path), "rb") as source:
            return _stream_batches(source)
    except OSError:
        return [], False


def _stream_batches(source: pa.NativeFile) -> tuple[list[pa.RecordBatch], bool]:
    batches: list[pa.RecordBatch] = []
    try:
        reader = pa.ipc.open_stream(source)
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                return batches, True
    except (pa.ArrowInvalid, OSError, EOFError):
        return batches, False  # a crash cut the last message: keep what is complete


class _Segment:
    """The active segment: an Arrow IPC stream file, locked while this process writes it."""

    def __init__(self, directory: Path, seq: int) -> None:
        self.stamp = _stamp()
        self.seq = seq
        self.path = directory / f".active-{self.stamp}-{os.getpid()}-{seq:05d}.arrows"
        self.opened = time.monotonic()
        self.rows = 0
        self._file = open(self.path, "xb")  # noqa: SIM115 - lives as long as the segment
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._writer = pa.ipc.new_stream(self._file, DECISION_SCHEMA)
        self._dirty = False
        self._synced_at = 0.0  # the first write is fsynced at once

    @property
    def size(self) -> int:
        return self._file.tell()

    def write(self, batch: pa.RecordBatch, *, fsync_interval: float | None) -> None:
        self._writer.write_batch(batch)
        self._file.flush()
        self._dirty = True
        if fsync_interval is not None and time.monotonic() - self._synced_at >= fsync_interval:
            self.sync()
        self.rows += batch.num_rows

    def sync(self) -> None:
        if self._dirty:
            os.fsync(self._file.fileno())
            self._dirty = False
            self._synced_at = time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()  # releases the lock


class DecisionLog:
    """A DecisionSink writing every scored row to rotated local files (see the module docstring).

    ``record`` copies the batch's arrays and queues them; a writer thread serialises and writes. Call ``close``
    to write what is queued and seal the active segment into a Parquet part.
    """

    def __init__(self, directory: Path, config: DecisionLogConfig | None = None) -> None:
        self.directory = Path(directory)
        self.config = config or DecisionLogConfig()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DecisionLogError(
                f"cannot create the decision log directory {self.directory}: {exc}; set a writable data directory"
            ) from None
        self._seq = self._next_seq()
        self.recovered_rows = self._recover()
        _warm_conversion()
        self._segment: _Segment | None = None
        self._cache = _RuleCache()
        self._writer: BackgroundWriter[_Scored] = BackgroundWriter(
            "decision-log", self._consume, max_pending_rows=self.config.max_pending_rows,
            overflow=self.config.overflow, linger_seconds=self.config.linger_seconds, tick=self._tick,
            tick_seconds=min(1.0, self.config.max_segment_seconds),
        )

    # -- DecisionSink ------------------------------------------------------------------------------------------
    def record(self, txn_ids: Sequence[str], txns: np.ndarray, decisions: Decisions) -> None:
        """Queue a decided batch for writing (cheap: copies of the arrays)."""
        if len(txns):
            self._writer.submit(_capture(txn_ids, txns, decisions, self._cache), len(txns))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write (and fsync) everything recorded so far; True when done within ``timeout``."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Write what is queued, then seal the active segment into a Parquet part."""
        self._writer.close()
        self._seal()

    def stats(self) -> WriterStats:
        return self._writer.stats()

    # -- the writer thread -------------------------------------------------------------------------------------
    def _consume(self, items: list[_Scored]) -> None:
        for batch in decision_batches(items):
            if self._segment is None:
                self._seq += 1
                self._segment = _Segment(self.directory, self._seq)
            self._segment.write(batch, fsync_interval=self.config.fsync_interval_seconds)
            if self._segment.size >= self.config.max_segment_bytes:
                self._seal()

    def _tick(self) -> None:
        segment = self._segment
        if segment is not None and self.config.fsync_interval_seconds is not None:
            segment.sync()
        age = time.monotonic() - segment.opened if segment is not None else 0.0
        if segment is not None and segment.rows and age >= self.config.max_segment_seconds:
            self._seal()

    def _seal(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.close()
        _convert(segment.path, self.config.compression)
        self._apply_retention()

    # -- files -------------------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        names = [p.name for p in self.directory.iterdir()]
        seqs = [int(m.group(3)) for name in names if (m := _PART.match(name) or _ACTIVE.match(name))]
        return max(seqs, default=0)

    def _recover(self) -> int:
        """Convert segments left active by a process that died (those nobody holds the lock of)."""
        rows = 0
        for path in sorted(self.directory.glob(".active-*.arrows")):
            try:
                with open(path, "rb") as fh:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    rows += _convert(path, self.config.compression)
            except BlockingIOError:
                continue  # another live writer owns it
        if rows:
            log.warning("decision_log_recovered", directory=str(self.directory), rows=rows)
        return rows

    def _apply_retention(self) -> None:
        limit = self.config.retain_bytes
        if limit is None:
            return
        parts = sorted(_parts(self.directory))
        sizes = [p.stat().st_size for p in parts]
        total = sum(sizes)
        for part, size in zip(parts, sizes, strict=True):
            if total <= limit or part == parts[-1]:
                break
            part.unlink(missing_ok=True)
            total -= size


# Parquet dictionary-encodes these (few distinct values: names, versions, keys of repeat payers); feature and
# money columns are nearly all distinct, and trying a dictionary on them cost 20% more time and 10% more bytes.
# Transaction ids are unique: a dictionary on them cost time and 1 byte a row for nothing.
_DICTIONARY_COLUMNS = [
    f.name for f in DECISION_SCHEMA
    if (pa.types.is_string(f.type) or pa.types.is_list(f.type)) and f.name != "transaction_id"
]


def _convert(active: Path, compression: str) -> int:
    """Seal an active stream segment into a Parquet part (written aside, fsynced, renamed); returns its rows."""
    m = _ACTIVE.match(active.name)
    assert m is not None, active
    final = active.with_name(f"decisions-{m.group(1)}-{m.group(2)}-{m.group(3)}.parquet")
    tmp = active.with_name(f".{final.name}.tmp")
    # Mapped, not read: the batches point into the file (reading a segment into memory cost 1.4 µs per row, against
    # 2 µs to encode it), so the part is written before the map closes.
    try:
        source: pa.NativeFile = pa.memory_map(str(active))
    except OSError:  # a file system that cannot map files
        source = pa.OSFile(str(active), "rb")
    with source:
        batches, _ = _stream_batches(source)
        rows = int(sum(b.num_rows for b in batches))
        if rows:
            pq.write_table(pa.Table.from_batches(batches, schema=DECISION_SCHEMA), tmp, compression=compression,
                           use_dictionary=_DICTIONARY_COLUMNS)
        del batches
    if rows:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    active.unlink(missing_ok=True)
    _fsync_dir(active.parent)
    return rows


def _parts(directory: Path) -> Iterator[Path]:
    return (p for p in directory.iterdir() if _PART.match(p.name))


def _segment_order(path: Path) -> tuple[str, int, int]:
    m = _PART.match(path.name) or _ACTIVE.match(path.name)
    assert m is not None
    return m.group(1), int(m.group(2)), int(m.group(3))


def _to_frame(tables: list[pa.Table]) -> pd.DataFrame:
    if not tables:
        return DECISION_SCHEMA.empty_table().to_pandas()
    table = pa.concat_tables(tables, promote_options="default")
    return table.to_pandas()


def read_decisions(
    directory: Path,
    *,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """All decisions in a decision-log directory (sealed parts and the active segments), oldest segment first.

    ``start``/``end`` filter on event_time (``start <= event_time < end``); ``columns`` selects columns.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DecisionLogError(f"{directory} is not a decision-log directory; pass the data directory's 'decisions'")
    paths = sorted((p for p in directory.iterdir() if _PART.match(p.name) or _ACTIVE.match(p.name)), key=_segment_order)
    tables: list[pa.Table] = []
    for path in paths:
        try:
            if path.suffix == ".parquet":
                table = pq.read_table(path, columns=list(columns) if columns else None)
            else:
                batches, _ = _read_stream(path)
                if not batches:
                    continue
                table = pa.Table.from_batches(batches)
                if columns:
                    table = table.select(list(columns))
        except FileNotFoundError:
            continue  # sealed or removed while we listed
        except (pa.ArrowInvalid, KeyError) as exc:
            raise DecisionLogError(f"{path} is not a readable decision-log segment ({exc}); move it aside") from None
        tables.append(table)
    return _filter_time(_to_frame(tables), start, end)


def _utc(value: pd.Timestamp | str) -> pd.Timestamp:
    import pandas as pd  # only reads need pandas (pyarrow's to_pandas imports it too); writers never do

    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _filter_time(frame: pd.DataFrame, start: pd.Timestamp | str | None, end: pd.Timestamp | str | None) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    if start is not None:
        mask &= (frame["event_time"] >= _utc(start)).to_numpy()
    if end is not None:
        mask &= (frame["event_time"] < _utc(end)).to_numpy()
    return frame.loc[mask].reset_index(drop=True)


# -- Redis Stream variant -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _redis_errors(url: str, stream: str) -> Iterator[None]:
    """The one place where Redis errors become DecisionLogError."""
    import redis  # only the Redis variant needs it: a single-machine server starts without importing it

    try:
        yield
    except redis.RedisError as exc:
        raise DecisionLogError(
            f"Redis decision stream {stream!r} at {_without_password(url)}: {exc}; "
            "check that Redis is reachable and the URL is right"
        ) from exc


def _without_password(url: str) -> str:
    """The URL as it may appear in errors and logs: any password replaced by '***'."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _ipc_bytes(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, DECISION_SCHEMA) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


class RedisDecisionLog:
    """A DecisionSink appending decisions to a Redis Stream, for deployments with several replicas.

    Each stream entry holds one Arrow IPC stream of up to ``rows_per_entry`` decisions (fields ``format``,
    ``rows``, ``data``); the stream is capped with ``XADD ... MAXLEN ~ max_entries``.
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = "outpost:decisions",
        max_entries: int = 100_000,
        rows_per_entry: int = 4096,
        config: DecisionLogConfig | None = None,
    ) -> None:
        self.url = url
        self.stream = stream
        self.max_entries = max_entries
        self.rows_per_entry = rows_per_entry
        self.config = config or DecisionLogConfig()
        import redis

        with _redis_errors(url, stream):
            self._client = redis.Redis.from_url(url, socket_timeout=5.0)
            self._client.ping()
        _warm_conversion()
        self._cache = _RuleCache()
        self._writer: BackgroundWriter[_Scored] = BackgroundWriter(
            "decision-stream", self._consume, max_pending_rows=self.config.max_pending_rows,
            overflow=self.config.overflow, linger_seconds=self.config.linger_seconds,
        )

    def record(self, txn_ids: Sequence[str], txns: np.ndarray, decisions: Decisions) -> None:
        """Queue a decided batch for the stream (cheap: copies of the arrays)."""
        if len(txns):
            self._writer.submit(_capture(txn_ids, txns, decisions, self._cache), len(txns))

    def flush(self, timeout: float | None = 30.0) -> bool:
        return self._writer.flush(timeout)

    def close(self) -> None:
        self._writer.close()
        self._client.close()

    def stats(self) -> WriterStats:
        return self._writer.stats()

    def _consume(self, items: list[_Scored]) -> None:
        table = pa.Table.from_batches(decision_batches(items), schema=DECISION_SCHEMA)
        with _redis_errors(self.url, self.stream):
            pipe = self._client.pipeline(transaction=False)
            for batch in table.combine_chunks().to_batches(max_chunksize=self.rows_per_entry):
                pipe.xadd(
                    self.stream,
                    {"format": FORMAT_NAME, "rows": batch.num_rows, "data": _ipc_bytes(batch)},
                    maxlen=self.max_entries, approximate=True,
                )
            pipe.execute()


def read_decision_stream(
    url: str, *, stream: str = "outpost:decisions", start: str = "-", end: str = "+", page: int = 100
) -> pd.DataFrame:
    """Every decision in a Redis decision stream between entry ids ``start`` and ``end``, as one DataFrame."""
    tables: list[pa.Table] = []
    import redis

    with _redis_errors(url, stream):
        client = redis.Redis.from_url(url, socket_timeout=10.0)
        try:
            cursor = start
            while True:
                entries = cast(list[tuple[bytes, dict[bytes, bytes]]],
                               client.xrange(stream, min=cursor, max=end, count=page))
                for _entry_id, fields in entries:
                    if fields.get(b"format", b"").decode() != FORMAT_NAME:
                        raise DecisionLogError(
                            f"stream {stream!r} holds an entry of format {fields.get(b'format')!r}, expected "
                            f"{FORMAT_NAME}; read it with a matching Outpost version"
                        )
                    tables.append(pa.ipc.open_stream(pa.py_buffer(fields[b"data"])).read_all())
                if len(entries) < page:
                    break
                cursor = "(" + entries[-1][0].decode()
        finally:
            client.close()
    return _to_frame(tables)
