"""The embedded state backend: per-account state in flat numpy arrays, updated by the numba kernels.

No Python object exists per account: an open-addressing table maps account keys to dense slots, fixed-size
header columns hold per-account scalars, an event arena holds the events inside the retention (one chain per
account), a global seen set holds (account, counterparty) and (account, device) pairs, and a small table holds
outcome labels per counterparty. Every array grows by doubling, between kernel calls, never inside them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features import _kernels as k
from features._catalogue import CATALOGUE
from features._config import FeatureConfig
from features._errors import EngineStateError, RecoveryError
from features._schema import NO_TIME

__all__ = ["N_FEATURES", "EmbeddedState", "kernel_params"]

N_FEATURES = len(CATALOGUE)
SWEEP_PER_ROW = 2

# name -> dtype of every state array (snapshots store exactly these, plus meta)
_ARRAYS: dict[str, type] = {
    "acct_keys": np.uint64, "acct_slots": np.int32,
    "h_head": np.int32, "h_n": np.int32, "h_last": np.int64, "h_pmax": np.int64, "h_count": np.int32,
    "h_ewma": np.float64, "h_oldest": np.int64,
    "e_time": np.int64, "e_amount": np.int64, "e_cp": np.uint64, "e_branch": np.uint32, "e_next": np.int32,
    "e_flags": np.uint8,
    "seen": np.uint64,
    "o_keys": np.uint64, "o_slots": np.int32, "o_total": np.int32, "o_fraud": np.int32, "o_max": np.int64,
    "o_head": np.int32,
    "oe_time": np.int64, "oe_fraud": np.int8, "oe_next": np.int32,
}
_HEADER = ("h_head", "h_n", "h_last", "h_pmax", "h_count", "h_ewma", "h_oldest")
_ARENA = ("e_time", "e_amount", "e_cp", "e_branch", "e_next", "e_flags")
_CPS = ("o_total", "o_fraud", "o_max", "o_head")
_OUTCOMES = ("oe_time", "oe_fraud", "oe_next")


def kernel_params(config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The integer and float parameter vectors the kernels read."""
    ip = np.zeros(k.IP_N, dtype=np.int64)
    ip[k.IP_RETENTION] = config.retention_us
    ip[k.IP_OFFSET] = config.utc_offset_us
    ip[k.IP_THRESHOLD] = config.threshold_fen
    ip[k.IP_UNDER_LOW] = config.just_under_low_fen
    ip[k.IP_SWEEP] = SWEEP_PER_ROW
    fp = np.array([config.typical_weight_float, config.rapid_in_out_cap], dtype=np.float64)
    return ip, fp


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    bigger = np.zeros(size, dtype=array.dtype)
    bigger[: array.size] = array
    return bigger


def _warm_lazy_kernels() -> None:
    """Load the kernels that run only now and then (numba's disk cache, or a compile): else the first growth of
    the state, or the first outcome report, under load would pay it, a stall of tens of milliseconds for every
    call in flight. They run on throwaway arrays; no state is touched."""
    empty_keys, empty_slots = np.zeros(2, dtype=np.uint64), np.zeros(2, dtype=np.int32)
    k.rehash_accounts(empty_keys, empty_slots, np.zeros(4, dtype=np.uint64), np.zeros(4, dtype=np.int32))
    k.rehash_seen(empty_keys, np.zeros(4, dtype=np.uint64))
    scratch: dict[str, np.ndarray] = {
        name: np.zeros(64 if name in ("o_keys", "o_slots") else 32, dtype=_ARRAYS[name])
        for name in ("o_keys", "o_slots", *_CPS, *_OUTCOMES)
    }
    meta = np.zeros(k.META_N, dtype=np.int64)
    meta[k.M_FREE] = meta[k.M_DEFERRED] = -1
    meta[k.M_MAX_TIME] = NO_TIME
    k.outcome_kernel(
        np.uint64(1), np.int64(0), False, scratch["o_keys"], scratch["o_slots"], scratch["o_total"],
        scratch["o_fraud"], scratch["o_max"], scratch["o_head"], scratch["oe_time"], scratch["oe_fraud"],
        scratch["oe_next"], meta,
    )


@dataclass(slots=True)
class _Pending:
    """What commit() needs from the score() call it finalises."""

    handles: np.ndarray
    row_event: np.ndarray
    row_slot: np.ndarray
    row_ins: np.ndarray
    row_ewma: np.ndarray


class EmbeddedState:
    """In-process feature state; see the module docstring for the layout."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.ip, self.fp = kernel_params(config)
        cap = _pow2(config.initial_accounts)
        self.a: dict[str, np.ndarray] = {}
        sizes = {"acct_keys": 2 * cap, "acct_slots": 2 * cap, "seen": 4 * cap, "o_keys": 64, "o_slots": 64}
        for name in _HEADER:
            sizes[name] = cap
        for name in _ARENA:
            sizes[name] = 2 * cap
        for name in _CPS:
            sizes[name] = 32
        for name in _OUTCOMES:
            sizes[name] = 64
        for name, dtype in _ARRAYS.items():
            self.a[name] = np.zeros(sizes[name], dtype=dtype)
        self.meta = np.zeros(k.META_N, dtype=np.int64)
        self.meta[k.M_FREE] = -1
        self.meta[k.M_DEFERRED] = -1
        self.meta[k.M_MAX_TIME] = NO_TIME
        self._pending: _Pending | None = None
        _warm_lazy_kernels()

    # --- capacity ---------------------------------------------------------------------------------------------
    def ensure(self, rows: int) -> None:
        """Grow every structure so that ``rows`` more applied rows fit without growth inside the kernel."""
        a, meta = self.a, self.meta
        need = int(meta[k.M_ACCOUNTS]) + rows
        if need > a["h_head"].size:
            size = max(2 * a["h_head"].size, _pow2(need))
            for name in _HEADER:
                a[name] = _grown(a[name], size)
        if 2 * need > a["acct_keys"].size:
            size = max(2 * a["acct_keys"].size, _pow2(2 * need))
            keys = np.zeros(size, dtype=np.uint64)
            slots = np.zeros(size, dtype=np.int32)
            k.rehash_accounts(a["acct_keys"], a["acct_slots"], keys, slots)
            a["acct_keys"], a["acct_slots"] = keys, slots
        if a["e_time"].size - int(meta[k.M_EVENTS]) < rows:
            size = max(2 * a["e_time"].size, _pow2(int(meta[k.M_EVENTS]) + rows))
            for name in _ARENA:
                a[name] = _grown(a[name], size)
        # The seen set holds bare 64-bit hashes (8 bytes an entry), so it can run fuller: up to 3/4.
        need = int(meta[k.M_SEEN]) + 2 * rows
        if 4 * need > 3 * a["seen"].size:
            size = max(2 * a["seen"].size, _pow2((4 * need + 2) // 3))
            seen = np.zeros(size, dtype=np.uint64)
            k.rehash_seen(a["seen"], seen)
            a["seen"] = seen

    def _ensure_outcome(self) -> None:
        a, meta = self.a, self.meta
        if int(meta[k.M_CPS]) + 1 > a["o_total"].size:
            for name in _CPS:
                a[name] = _grown(a[name], 2 * a[name].size)
        if 2 * (int(meta[k.M_CPS]) + 1) > a["o_keys"].size:
            size = 2 * a["o_keys"].size
            keys = np.zeros(size, dtype=np.uint64)
            slots = np.zeros(size, dtype=np.int32)
            k.rehash_accounts(a["o_keys"], a["o_slots"], keys, slots)
            a["o_keys"], a["o_slots"] = keys, slots
        if int(meta[k.M_OTOP]) + 1 > a["oe_time"].size:
            for name in _OUTCOMES:
                a[name] = _grown(a[name], 2 * a[name].size)

    # --- the three operations ---------------------------------------------------------------------------------
    def score(self, txns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features before each row, applying rows with apply=1 provisionally; see FeatureEngine.score."""
        n = txns.shape[0]
        self.ensure(n)
        a = self.a
        out = np.empty((n, N_FEATURES), dtype=np.float64)
        handles = np.empty(n, dtype=np.int64)
        pending = _Pending(
            handles=handles,
            row_event=np.empty(n, dtype=np.int64),
            row_slot=np.empty(n, dtype=np.int64),
            row_ins=np.empty(n, dtype=np.int8),
            row_ewma=np.empty(n, dtype=np.float64),
        )
        args = [
            np.ascontiguousarray(txns), self.ip, self.fp,
            a["acct_keys"], a["acct_slots"], a["h_head"], a["h_n"], a["h_last"], a["h_pmax"], a["h_count"],
            a["h_ewma"], a["h_oldest"],
            a["e_time"], a["e_amount"], a["e_cp"], a["e_branch"], a["e_next"], a["e_flags"],
            a["seen"],
            a["o_keys"], a["o_slots"], a["o_total"], a["o_fraud"], a["o_max"], a["o_head"], a["oe_time"],
            a["oe_fraud"], a["oe_next"],
            self.meta, out, handles, pending.row_event, pending.row_slot, pending.row_ins, pending.row_ewma,
        ]
        k.score_kernel(*args)
        self._pending = pending
        return out, handles

    @property
    def has_pending(self) -> bool:
        """True while applied rows of the last score() wait for commit()."""
        return self._pending is not None

    def commit(self, txns: np.ndarray, handles: np.ndarray, blocked: np.ndarray) -> None:
        """Finalise the applied rows of the last score() call; blocked rows become attempts."""
        pending = self._pending
        if pending is None or (
            handles is not pending.handles
            and (pending.handles.shape != handles.shape or not np.array_equal(pending.handles, handles))
        ):
            raise EngineStateError(
                "commit() must receive the transactions and handles of the last score() call, once; "
                "call score() again for new transactions"
            )
        self._pending = None
        a = self.a
        k.commit_kernel(
            np.ascontiguousarray(txns), handles, blocked, bool(np.count_nonzero(blocked)), pending.row_event,
            pending.row_slot, pending.row_ins, pending.row_ewma, self.ip, self.fp,
            a["h_head"], a["h_n"], a["h_last"], a["h_pmax"], a["h_ewma"], a["h_oldest"], a["e_time"], a["e_next"],
            a["e_flags"], a["seen"], self.meta,
        )

    def record_outcome(self, counterparty_key: int, reported_at_us: int, is_fraud: bool) -> None:
        """Remember a labelled outcome on a counterparty, with the business time it became known."""
        self._ensure_outcome()
        a = self.a
        k.outcome_kernel(
            np.uint64(counterparty_key), np.int64(reported_at_us), bool(is_fraud),
            a["o_keys"], a["o_slots"], a["o_total"], a["o_fraud"], a["o_max"], a["o_head"], a["oe_time"],
            a["oe_fraud"], a["oe_next"], self.meta,
        )

    # --- snapshots and statistics -------------------------------------------------------------------------------
    def export(self) -> dict[str, np.ndarray]:
        """Copies of every state array and meta (taken between calls; safe to write from another thread)."""
        if self._pending is not None:
            raise EngineStateError("snapshot taken between score() and commit(); commit first")
        arrays = {name: array.copy() for name, array in self.a.items()}
        arrays["meta"] = self.meta.copy()
        return arrays

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace the state by exported arrays (validated for names and dtypes)."""
        if "h_oldest" not in arrays and "h_head" in arrays:
            # A snapshot from before the column: NO_TIME is a lower bound of every event time, so the sweep walks
            # each account once and sets its exact value.
            arrays = {**arrays, "h_oldest": np.full(arrays["h_head"].size, NO_TIME, dtype=np.int64)}
        for name, dtype in _ARRAYS.items():
            if name not in arrays or arrays[name].dtype != np.dtype(dtype):
                raise RecoveryError(f"snapshot lacks array {name!r} of dtype {np.dtype(dtype)}; delete the snapshot")
        if "meta" not in arrays or arrays["meta"].shape != (k.META_N,):
            raise RecoveryError("snapshot lacks its meta vector; delete the snapshot")
        self.a = {name: np.array(arrays[name]) for name in _ARRAYS}
        self.meta = np.array(arrays["meta"], dtype=np.int64)
        self._pending = None

    def stats(self) -> dict[str, int]:
        """Counts and memory of the state."""
        meta = self.meta
        return {
            "accounts": int(meta[k.M_ACCOUNTS]),
            "events": int(meta[k.M_EVENTS]),
            "applied": int(meta[k.M_APPLIED]),
            "seen_pairs": int(meta[k.M_SEEN]),
            "counterparties_with_outcomes": int(meta[k.M_CPS]),
            "outcomes": int(meta[k.M_OUTCOMES]),
            "state_bytes": int(sum(array.nbytes for array in self.a.values()) + meta.nbytes),
        }
