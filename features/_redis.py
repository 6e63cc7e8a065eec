"""The Redis state backend: the same features from state kept in a Redis server, for several replicas.

Each score() call is ONE round trip: a server-side Lua script (``_redis_score.lua``) reads and updates every
row's account atomically, in order, and returns the raw aggregates that ``finish_rows`` (shared with the
embedded backend) turns into features. commit() makes a second round trip only when some rows are blocked.
Redis errors are translated into ``BackendError`` here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
import redis.exceptions

from features import _kernels as k
from features._config import FeatureConfig
from features._embedded import N_FEATURES, kernel_params
from features._errors import BackendError, EngineStateError

__all__ = ["RedisState"]

_SOCKET_TIMEOUT_S = 0.5
_HERE = Path(__file__).parent
_EXTRA = 3  # handle, inserted bits, typical amount before the row


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except redis.exceptions.ConnectionError as exc:
        raise BackendError(
            f"Redis unreachable while {action}: {exc}; check redis_url and that redis-server runs"
        ) from exc
    except redis.exceptions.RedisError as exc:
        raise BackendError(f"Redis failed while {action}: {exc}") from exc


def _hex(key: int) -> str:
    return f"{key:016x}"


@dataclass(slots=True)
class _Pending:
    handles: np.ndarray
    inserted: np.ndarray
    ewma_before: np.ndarray
    count_before: np.ndarray  # the account's row count before each row (txn_count_total's raw value)
    members: list[str]


class RedisState:
    """Feature state in Redis under ``config.redis_key_prefix``; several engines may share one server."""

    def __init__(self, config: FeatureConfig, redis_url: str) -> None:
        self.config = config
        self.ip, self.fp = kernel_params(config)
        self._prefix = config.redis_key_prefix
        self._weight = repr(config.typical_weight_float)
        with _translated("connecting"):
            # Bounded waits: a dead or hung Redis must fail a call fast (the server then answers degraded),
            # never block the event loop.
            self._redis: Any = redis.Redis.from_url(
                redis_url, socket_timeout=_SOCKET_TIMEOUT_S, socket_connect_timeout=_SOCKET_TIMEOUT_S
            )
            self._redis.ping()
            self._score = self._redis.register_script((_HERE / "_redis_score.lua").read_text(encoding="utf-8"))
            self._commit = self._redis.register_script((_HERE / "_redis_commit.lua").read_text(encoding="utf-8"))
            self._outcome = self._redis.register_script((_HERE / "_redis_outcome.lua").read_text(encoding="utf-8"))
        self._pending: _Pending | None = None

    @property
    def has_pending(self) -> bool:
        """True while applied rows of the last score() wait for commit()."""
        return self._pending is not None

    def score(self, txns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features before each row, applying rows with apply=1; see FeatureEngine.score."""
        n = len(txns)
        out = np.empty((n, N_FEATURES), dtype=np.float64)
        if n == 0:
            return out, np.zeros(0, dtype=np.int64)
        tt = np.ascontiguousarray(txns["event_time_us"])
        tf = np.ascontiguousarray(txns["amount_fen"])
        ttype = np.ascontiguousarray(txns["txn_type"])
        flags = k.txn_flags(tt, tf, ttype, self.ip)
        branches = k.branch_codes(np.ascontiguousarray(txns["branch_key"]), ttype)
        keys = np.empty((n, 3), dtype=">u8")
        keys[:, 0] = txns["account_key"]
        keys[:, 1] = txns["counterparty_key"]
        keys[:, 2] = txns["device_key"]
        numbers = np.empty((n, 5), dtype="<f8")
        numbers[:, 0] = tt
        numbers[:, 1] = tf
        numbers[:, 2] = flags
        numbers[:, 3] = branches
        numbers[:, 4] = txns["apply"] != 0
        args: list[str | bytes] = [
            self._prefix, str(self.config.retention_us), self._weight, str(n), keys.tobytes().hex(), numbers.tobytes()
        ]
        with _translated("scoring"):
            reply = self._score(args=args)
        values = np.frombuffer(reply[0], dtype="<f8").reshape(n, k.RAW_N + _EXTRA)
        raw = np.ascontiguousarray(values[:, : k.RAW_N])
        k.finish_rows(
            out, raw, tt, tf, np.ascontiguousarray(txns["balance_fen"]),
            np.ascontiguousarray(txns["account_opened_us"]), np.ascontiguousarray(txns["mcc"]),
            np.ascontiguousarray(txns["customer_age"]), ttype, np.ascontiguousarray(txns["channel"]),
            np.ascontiguousarray(txns["risk_level"]), np.ascontiguousarray(txns["is_employee"]),
            np.ascontiguousarray(txns["cross_border"]), self.ip, self.fp,
        )
        handles = values[:, k.RAW_N].astype(np.int64)
        self._pending = _Pending(
            handles=handles,
            inserted=values[:, k.RAW_N + 1].astype(np.int8),
            ewma_before=np.ascontiguousarray(values[:, k.RAW_N + 2]),
            count_before=values[:, k.R_COUNT].astype(np.int64),
            members=[m.decode() if isinstance(m, bytes) else str(m) for m in reply[1:]],
        )
        return out, handles

    def commit(self, txns: np.ndarray, handles: np.ndarray, blocked: np.ndarray) -> None:
        """Finalise the last score(); blocked rows become attempts (a second round trip only if any)."""
        pending = self._pending
        if pending is None or not np.array_equal(pending.handles, handles):
            raise EngineStateError(
                "commit() must receive the transactions and handles of the last score() call, once; "
                "call score() again for new transactions"
            )
        self._pending = None
        if not blocked.any():
            return
        ta = np.ascontiguousarray(txns["account_key"])
        tc = np.ascontiguousarray(txns["counterparty_key"])
        td = np.ascontiguousarray(txns["device_key"])
        weight = float(self.fp[k.FP_WEIGHT])
        remove, ewma_set, ewma_value = k.plan_blocked(
            ta, tc, td, np.ascontiguousarray(txns["amount_fen"]), handles, blocked, pending.inserted,
            pending.ewma_before, weight,
        )
        # What this call left on each account it applied rows to: the row count and the typical amount after its
        # last applied row. The script compares the count with Redis's to see rows other replicas applied since.
        left: dict[int, tuple[int, float]] = {}
        fixed = np.isin(ta, ta[blocked & (handles >= 0)])  # rows of the accounts with blocked rows
        for j in np.flatnonzero(fixed & (handles >= 0)).tolist():
            before, fen = float(pending.ewma_before[j]), float(txns["amount_fen"][j])
            typical = fen if before == 0 else before * (1.0 - weight) + fen * weight
            left[int(ta[j])] = (int(pending.count_before[j]) + 1, typical)
        marks: list[str] = []
        fixes: list[str] = []
        for i in np.flatnonzero(blocked & (handles >= 0)).tolist():
            acct = _hex(int(ta[i]))
            count, typical = left[int(ta[i])]
            if pending.members[i]:
                marks += ["b", acct, pending.members[i]]
            if remove[i] & 1:
                fixes += ["s", acct, f"c{_hex(int(tc[i]))}|{count}"]
            if remove[i] & 2:
                fixes += ["s", acct, f"d{_hex(int(td[i]))}|{count}"]
            if ewma_set[i]:
                fixes += ["e", acct, f"{float(ewma_value[i]):.17g}|{typical:.17g}|{count}"]
        # The score script's own weight; events are marked blocked before any counterparty is looked up.
        args = [self._prefix, self._weight, *marks, *fixes]
        with _translated("committing blocked rows"):
            self._commit(args=args)

    def record_outcome(self, counterparty_key: int, reported_at_us: int, is_fraud: bool) -> None:
        """Remember a labelled outcome on a counterparty, with the business time it became known."""
        with _translated("recording an outcome"):
            self._outcome(args=[self._prefix, _hex(counterparty_key), str(reported_at_us), "1" if is_fraud else "0"])

    def stats(self) -> dict[str, int]:
        """Accounts, applied rows and outcomes under this prefix, and Redis's used memory."""
        p = self._prefix
        with _translated("reading statistics"):
            accounts, applied, outcomes = self._redis.mget(f"{p}:accounts", f"{p}:applied", f"{p}:outcomes")
            memory = self._redis.info("memory").get("used_memory", 0)
        return {
            "accounts": int(accounts or 0),
            "applied": int(applied or 0),
            "outcomes": int(outcomes or 0),
            "state_bytes": int(memory),
        }

    def close(self) -> None:
        """Close the connection pool."""
        with _translated("closing"):
            self._redis.close()
