"""numba kernels of the embedded state: hash tables, the score/apply loop, commit (blocked flips) and pruning.

Everything stateful lives in flat numpy arrays owned by ``features._embedded``; these functions only read and
write them. ``finish_rows`` turns per-row raw aggregates into catalogue features and is shared with the Redis
backend, so both backends derive features from the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit

__all__ = [
    "FLAG_BLOCKED",
    "FLAG_JUST_UNDER",
    "FLAG_NIGHT",
    "IP_N",
    "META_N",
    "RAW_N",
    "branch_codes",
    "commit_kernel",
    "finish_rows",
    "outcome_kernel",
    "plan_blocked",
    "rehash_accounts",
    "rehash_seen",
    "score_kernel",
    "txn_flags",
]

Arr = np.ndarray
_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(function: _F) -> _F:
    """Compile with numba (nopython, cached on disk); typed as the Python function it compiles."""
    return cast(_F, njit(cache=True)(function))


def _jit_inline(function: _F) -> _F:
    """Like _jit, and inlined into its numba callers (tiny helpers of the hot loop)."""
    return cast(_F, njit(cache=True, inline="always")(function))


# --- layout constants -------------------------------------------------------------------------------------------
# meta (int64 scalars of the state, snapshotted with it)
M_ACCOUNTS = 0  # accounts in use (dense slots 0..n-1)
M_TOP = 1  # arena high-water mark
M_FREE = 2  # head of the arena free list (-1 = empty)
M_EVENTS = 3  # live events in the arena
M_NEXT_ID = 4  # next event id (handle)
M_MAX_TIME = 5  # largest event_time applied so far (the watermark W)
M_CURSOR = 6  # sweep cursor over account slots
M_SEEN = 7  # entries in the seen set
M_CPS = 8  # counterparties with outcomes
M_OTOP = 9  # outcome arena high-water mark
M_APPLIED = 10  # rows applied ever
M_OUTCOMES = 11  # outcomes recorded ever
M_DEFERRED = 12  # head of events pruned by score(), released to the free list by commit()
M_DEFERRED_N = 13  # their number
META_N = 14

# ip (int64 parameters)
IP_RETENTION = 0
IP_OFFSET = 1
IP_THRESHOLD = 2
IP_UNDER_LOW = 3
IP_SWEEP = 4
IP_N = 5
# fp (float64 parameters)
FP_WEIGHT = 0
FP_CAP = 1

# event flags (uint8): low 4 bits = transaction type
FLAG_BLOCKED = 16
FLAG_NIGHT = 32
FLAG_JUST_UNDER = 64

_NO_TIME = np.iinfo(np.int64).min
# h_oldest of an account without events. h_oldest is a lower bound on the times of an account's events (exact after
# a sweep walks its chain): _NO_TIME, the value a snapshot from before the column loads as, makes the sweep walk.
_EMPTY_CHAIN = np.iinfo(np.int64).max
_NO_BALANCE = np.iinfo(np.int64).min
_H1 = 3_600_000_000
_D1 = 86_400_000_000
_WINDOWS = (_H1, 24 * _H1, 7 * _D1, 30 * _D1)
_W30 = 30 * _D1
_W7 = 7 * _D1
_W24 = _D1

# raw aggregates per row (float64), computed by a backend and turned into features by finish_rows
R_WIN = 0  # 16 values: direction (out=0, in=1) * 8 + window (1h, 24h, 7d, 30d) * 2 + (count=0, sum_fen=1)
R_CASH_COUNT = 16
R_CASH_SUM = 17
R_BRANCHES = 18  # distinct branches of withdrawals in 24h, this one included
R_FAN_OUT_24 = 19
R_FAN_OUT_7 = 20
R_FAN_IN_24 = 21
R_FAN_IN_7 = 22
R_UNDER_7 = 23
R_NIGHT_7 = 24
R_PREV = 25  # event_time of the latest earlier event with time <= t (valid when R_HAS_PREV)
R_HAS_PREV = 26
R_COUNT = 27
R_NEW_CP = 28
R_NEW_DEV = 29
R_EWMA = 30  # typical amount in fen before this row (0 = no history)
R_CP_REPORTS = 31
R_CP_TOTAL = 32
RAW_N = 33

_U30 = np.uint64(30)
_U27 = np.uint64(27)
_U31 = np.uint64(31)
_U32 = np.uint64(32)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TAG_CP = np.uint64(0x9E3779B97F4A7C15)
_TAG_DEV = np.uint64(0xC2B2AE3D27D4EB4F)
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_LOW32 = np.uint64(0xFFFFFFFF)


@_jit_inline
def _mix(x: np.uint64) -> np.uint64:
    x = x ^ (x >> _U30)
    x = x * _M1
    x = x ^ (x >> _U27)
    x = x * _M2
    return x ^ (x >> _U31)


@_jit_inline
def _pair(account: np.uint64, other: np.uint64, tag: np.uint64) -> np.uint64:
    h = _mix(account ^ _mix(other ^ tag))
    return _U1 if h == _U0 else h


@_jit_inline
def _branch32(key: np.uint64) -> np.uint32:
    if key == _U0:
        return np.uint32(0)
    low = (key ^ (key >> _U32)) & _LOW32
    return np.uint32(1) if low == _U0 else np.uint32(low)


@_jit_inline
def _is_outflow(typ: int) -> bool:
    return typ == 1 or typ == 3 or typ == 5 or typ == 6 or typ == 8


@_jit_inline
def _is_inflow(typ: int) -> bool:
    return typ == 2 or typ == 4 or typ == 7


# --- hash tables (linear probing, key 0 = empty) -----------------------------------------------------------------
@_jit
def _table_find(keys: np.ndarray, slots: np.ndarray, key: np.uint64) -> int:
    mask = keys.size - 1
    i = np.int64(_mix(key) & np.uint64(mask))
    while True:
        k = keys[i]
        if k == key:
            return int(slots[i])
        if k == _U0:
            return -1
        i = (i + 1) & mask


@_jit
def _table_insert(keys: np.ndarray, slots: np.ndarray, key: np.uint64, slot: int) -> None:
    mask = keys.size - 1
    i = np.int64(_mix(key) & np.uint64(mask))
    while keys[i] != _U0:
        i = (i + 1) & mask
    keys[i] = key
    slots[i] = slot


@_jit
def rehash_accounts(old_keys: np.ndarray, old_slots: np.ndarray, keys: np.ndarray, slots: np.ndarray) -> None:
    """Insert every entry of an old key->slot table into a new, larger empty one."""
    for i in range(old_keys.size):
        if old_keys[i] != _U0:
            _table_insert(keys, slots, old_keys[i], old_slots[i])


@_jit
def _seen_contains(keys: np.ndarray, h: np.uint64) -> bool:
    mask = keys.size - 1
    i = np.int64(h & np.uint64(mask))
    while True:
        k = keys[i]
        if k == h:
            return True
        if k == _U0:
            return False
        i = (i + 1) & mask


@_jit
def _seen_insert(keys: np.ndarray, h: np.uint64) -> bool:
    mask = keys.size - 1
    i = np.int64(h & np.uint64(mask))
    while True:
        k = keys[i]
        if k == h:
            return False
        if k == _U0:
            keys[i] = h
            return True
        i = (i + 1) & mask


@_jit
def _seen_delete(keys: np.ndarray, h: np.uint64) -> bool:
    # Backward-shift deletion keeps probe chains intact without tombstones.
    mask = keys.size - 1
    i = np.int64(h & np.uint64(mask))
    while True:
        k = keys[i]
        if k == _U0:
            return False
        if k == h:
            break
        i = (i + 1) & mask
    keys[i] = _U0
    j = i
    while True:
        j = (j + 1) & mask
        k = keys[j]
        if k == _U0:
            return True
        home = np.int64(k & np.uint64(mask))
        if ((j - home) & mask) >= ((j - i) & mask):
            keys[i] = k
            keys[j] = _U0
            i = j


@_jit
def rehash_seen(old_keys: np.ndarray, keys: np.ndarray) -> None:
    """Insert every entry of an old seen set into a new, larger empty one."""
    for i in range(old_keys.size):
        if old_keys[i] != _U0:
            _seen_insert(keys, old_keys[i])


# --- per-transaction values ---------------------------------------------------------------------------------------
@_jit_inline
def _local_hour(t: int, offset: int) -> int:
    return ((t + offset) // _H1) % 24


@_jit_inline
def _flags(t: int, fen: int, typ: int, ip: np.ndarray) -> int:
    flags = typ & 15
    if _local_hour(t, ip[IP_OFFSET]) < 6:
        flags |= FLAG_NIGHT
    if (typ == 3 or typ == 4) and ip[IP_UNDER_LOW] <= fen < ip[IP_THRESHOLD]:
        flags |= FLAG_JUST_UNDER
    return flags


@_jit
def txn_flags(tt: np.ndarray, tf: np.ndarray, ttype: np.ndarray, ip: np.ndarray) -> np.ndarray:
    """Event flags (type, night, just-under) of each row, as stored with the event."""
    out = np.empty(tt.size, dtype=np.uint8)
    for i in range(tt.size):
        out[i] = _flags(tt[i], tf[i], int(ttype[i]), ip)
    return out


@_jit
def _distinct(keys: np.ndarray, flagged: np.ndarray, n: int) -> tuple[int, int]:
    """Distinct keys among keys[:n], and distinct keys among those with flagged[i] != 0."""
    if n == 0:
        return 0, 0
    if n <= 24:
        total = 0
        sub = 0
        for i in range(n):
            first = True
            first_flagged = flagged[i] != 0
            for j in range(i):
                if keys[j] == keys[i]:
                    first = False
                    if flagged[j] != 0:
                        first_flagged = False
            if first:
                total += 1
            if flagged[i] != 0 and first_flagged:
                sub += 1
        return total, sub
    all_sorted = np.sort(keys[:n])
    total = 1
    for i in range(1, n):
        if all_sorted[i] != all_sorted[i - 1]:
            total += 1
    m = 0
    part = np.empty(n, dtype=keys.dtype)
    for i in range(n):
        if flagged[i] != 0:
            part[m] = keys[i]
            m += 1
    sub = 0
    if m > 0:
        part_sorted = np.sort(part[:m])
        sub = 1
        for i in range(1, m):
            if part_sorted[i] != part_sorted[i - 1]:
                sub += 1
    return total, sub


# --- finishing: raw aggregates -> catalogue features ---------------------------------------------------------------
@_jit
def _finish(out: np.ndarray, t: int, fen: int, bal: int, opened: int, mcc: int, age: int, typ: int, ch: int,
            risk: int, emp: int, cross: int, raw: np.ndarray, ip: np.ndarray, fp: np.ndarray) -> None:
    amount = fen / 100.0
    outflow = _is_outflow(typ)
    hour = _local_hour(t, ip[IP_OFFSET])
    out[0] = amount
    out[1] = typ
    out[2] = ch
    out[3] = 1.0 if outflow else 0.0
    out[4] = mcc
    out[5] = 1.0 if cross != 0 else 0.0
    out[6] = 1.0 if fen >= 100_000 and fen % 100_000 == 0 else 0.0
    out[7] = 1.0 if (typ == 3 or typ == 4) and ip[IP_UNDER_LOW] <= fen < ip[IP_THRESHOLD] else 0.0
    out[8] = hour
    out[9] = 1.0 if hour < 6 else 0.0
    out[10] = age
    out[11] = -1.0 if opened == _NO_TIME else (t - opened) / _D1
    out[12] = risk
    out[13] = 1.0 if emp != 0 else 0.0
    if bal == _NO_BALANCE:
        out[14] = -1.0
        out[15] = 0.0
    else:
        out[14] = bal / 100.0
        out[15] = fen / bal if outflow and bal > 0 else 0.0
    for k in range(16):
        out[16 + k] = raw[k] / 100.0 if k % 2 == 1 else raw[k]
    out[32] = raw[R_CASH_COUNT]
    out[33] = raw[R_CASH_SUM] / 100.0
    out[34] = raw[R_BRANCHES]
    out[35] = raw[R_FAN_OUT_24]
    out[36] = raw[R_FAN_OUT_7]
    out[37] = raw[R_FAN_IN_24]
    out[38] = raw[R_FAN_IN_7]
    in_sum = raw[1 * 8 + 1 * 2 + 1]
    if in_sum > 0:
        this_out = fen if outflow else 0
        ratio = (raw[0 * 8 + 1 * 2 + 1] + this_out) / in_sum
        out[39] = ratio if ratio < fp[FP_CAP] else fp[FP_CAP]
    else:
        out[39] = 0.0
    if raw[R_HAS_PREV] != 0:
        seconds = (t - np.int64(raw[R_PREV])) / 1_000_000.0
        out[40] = seconds
        out[41] = seconds / 86_400.0
    else:
        out[40] = -1.0
        out[41] = 0.0
    out[42] = raw[R_COUNT]
    out[43] = raw[R_NEW_CP]
    out[44] = raw[R_NEW_DEV]
    out[45] = fen / raw[R_EWMA] if raw[R_EWMA] > 0 else 1.0
    out[46] = raw[R_UNDER_7]
    out[47] = raw[R_NIGHT_7]
    out[48] = raw[R_CP_REPORTS]
    out[49] = raw[R_CP_REPORTS] / raw[R_CP_TOTAL] if raw[R_CP_TOTAL] > 0 else 0.0


@_jit
def finish_rows(out: np.ndarray, raw: np.ndarray, tt: np.ndarray, tf: np.ndarray, tbal: np.ndarray,
                topen: np.ndarray, tmcc: np.ndarray, tage: np.ndarray, ttype: np.ndarray, tch: np.ndarray,
                trisk: np.ndarray, temp: np.ndarray, tcross: np.ndarray, ip: np.ndarray, fp: np.ndarray) -> None:
    """Fill out[i] from raw[i] and the transaction's own fields (used by the Redis backend)."""
    for i in range(tt.size):
        _finish(out[i], tt[i], tf[i], tbal[i], topen[i], tmcc[i], tage[i], ttype[i], tch[i], trisk[i], temp[i],
                tcross[i], raw[i], ip, fp)


# --- score: read features before each row, then apply it provisionally ---------------------------------------------
@_jit
def score_kernel(
    txns: Arr,
    ip: Arr, fp: Arr,
    acct_keys: Arr, acct_slots: Arr, h_head: Arr, h_n: Arr, h_last: Arr, h_pmax: Arr, h_count: Arr, h_ewma: Arr,
    h_oldest: Arr,
    e_time: Arr, e_amount: Arr, e_cp: Arr, e_branch: Arr, e_next: Arr, e_flags: Arr,
    seen: Arr,
    o_keys: Arr, o_slots: Arr, o_total: Arr, o_fraud: Arr, o_max: Arr, o_head: Arr, oe_time: Arr, oe_fraud: Arr,
    oe_next: Arr,
    meta: Arr, out: Arr, handles: Arr, row_event: Arr, row_slot: Arr, row_ins: Arr, row_ewma: Arr,
) -> None:
    """Score rows in order; rows with apply=1 are applied provisionally (not blocked) before the next row."""
    n = txns.size
    raw = np.zeros(RAW_N)
    cap = 64
    k_out = np.empty(cap, dtype=np.uint64)
    f_out = np.empty(cap, dtype=np.uint8)
    k_in = np.empty(cap, dtype=np.uint64)
    f_in = np.empty(cap, dtype=np.uint8)
    k_br = np.empty(cap, dtype=np.uint64)
    f_br = np.ones(cap, dtype=np.uint8)
    weight = fp[FP_WEIGHT]
    for i in range(n):
        row = txns[i]
        t = row.event_time_us
        acct = row.account_key
        cp = row.counterparty_key
        dev = row.device_key
        fen = row.amount_fen
        typ = int(row.txn_type)
        apply = row.apply != 0
        raw[:] = 0.0
        slot = _table_find(acct_keys, acct_slots, acct)
        if slot < 0 and apply:
            slot = meta[M_ACCOUNTS]
            meta[M_ACCOUNTS] += 1
            _table_insert(acct_keys, acct_slots, acct, slot)
            h_head[slot] = -1
            h_n[slot] = 0
            h_last[slot] = _NO_TIME
            h_pmax[slot] = _NO_TIME
            h_count[slot] = 0
            h_ewma[slot] = 0.0
            h_oldest[slot] = _EMPTY_CHAIN
        count = 0
        ewma = 0.0
        if slot >= 0:
            count = int(h_count[slot])
            ewma = h_ewma[slot]
            chain = int(h_n[slot])
            if chain > cap:
                cap = 2 * chain
                k_out = np.empty(cap, dtype=np.uint64)
                f_out = np.empty(cap, dtype=np.uint8)
                k_in = np.empty(cap, dtype=np.uint64)
                f_in = np.empty(cap, dtype=np.uint8)
                k_br = np.empty(cap, dtype=np.uint64)
                f_br = np.ones(cap, dtype=np.uint8)
            n_out = 0
            n_in = 0
            n_br = 0
            last = h_last[slot]
            prev = _NO_TIME
            has_prev = False
            if last != _NO_TIME and last <= t:
                prev = last
                has_prev = True
            # Events past the account's retention are unlinked while walking the chain (applied rows only, so a
            # dry run changes nothing); their slots are reused only after commit(), which may still flip flags.
            horizon = last - ip[IP_RETENTION] if apply and last != _NO_TIME else _NO_TIME
            before = -1
            e = np.int64(h_head[slot])
            while e >= 0:
                et = e_time[e]
                nxt = np.int64(e_next[e])
                if et <= horizon:
                    if before < 0:
                        h_head[slot] = nxt
                    else:
                        e_next[before] = nxt
                    if h_pmax[slot] == _NO_TIME or et > h_pmax[slot]:
                        h_pmax[slot] = et
                    h_n[slot] -= 1
                    e_next[e] = meta[M_DEFERRED]
                    meta[M_DEFERRED] = e
                    meta[M_DEFERRED_N] += 1
                    e = nxt
                    continue
                before = int(e)
                flags = int(e_flags[e])
                if not (last <= t) and et <= t and (not has_prev or et > prev):
                    prev = et
                    has_prev = True
                dt = t - et
                if 0 <= dt < _W30:
                    if dt < _W7 and flags & FLAG_NIGHT:
                        raw[R_NIGHT_7] += 1
                    if not flags & FLAG_BLOCKED:
                        et_typ = flags & 15
                        amt = e_amount[e]
                        base = 0 if _is_outflow(et_typ) else (8 if _is_inflow(et_typ) else -1)
                        if base >= 0:
                            for w in range(4):
                                if dt < _WINDOWS[w]:
                                    raw[base + 2 * w] += 1
                                    raw[base + 2 * w + 1] += amt
                            ecp = e_cp[e]
                            if dt < _W7 and ecp != _U0:
                                if base == 0:
                                    k_out[n_out] = ecp
                                    f_out[n_out] = 1 if dt < _W24 else 0
                                    n_out += 1
                                else:
                                    k_in[n_in] = ecp
                                    f_in[n_in] = 1 if dt < _W24 else 0
                                    n_in += 1
                        if et_typ == 3 and dt < _W24:
                            raw[R_CASH_COUNT] += 1
                            raw[R_CASH_SUM] += amt
                            if e_branch[e] != 0:
                                k_br[n_br] = np.uint64(e_branch[e])
                                n_br += 1
                        if dt < _W7 and flags & FLAG_JUST_UNDER:
                            raw[R_UNDER_7] += 1
                e = nxt
            pm = h_pmax[slot]
            if pm != _NO_TIME and pm <= t and (not has_prev or pm > prev):
                prev = pm
                has_prev = True
            if has_prev:
                raw[R_PREV] = prev
                raw[R_HAS_PREV] = 1
            a, b = _distinct(k_out, f_out, n_out)
            raw[R_FAN_OUT_7] = a
            raw[R_FAN_OUT_24] = b
            a, b = _distinct(k_in, f_in, n_in)
            raw[R_FAN_IN_7] = a
            raw[R_FAN_IN_24] = b
            if typ == 3 and row.branch_key != _U0:
                k_br[n_br] = np.uint64(_branch32(row.branch_key))
                n_br += 1
            a, b = _distinct(k_br, f_br, n_br)
            raw[R_BRANCHES] = a
        elif typ == 3 and row.branch_key != _U0:
            raw[R_BRANCHES] = 1
        raw[R_COUNT] = count
        raw[R_EWMA] = ewma
        cp_new = False
        if cp != _U0:
            cp_new = not _seen_contains(seen, _pair(acct, cp, _TAG_CP))
        dev_unseen = False
        if dev != _U0:
            dev_unseen = not _seen_contains(seen, _pair(acct, dev, _TAG_DEV))
        raw[R_NEW_CP] = 1.0 if cp_new else 0.0
        raw[R_NEW_DEV] = 1.0 if dev_unseen and count > 0 else 0.0
        if cp != _U0 and o_keys.size > 0:
            cs = _table_find(o_keys, o_slots, cp)
            if cs >= 0:
                if o_max[cs] <= t:
                    raw[R_CP_REPORTS] = o_fraud[cs]
                    raw[R_CP_TOTAL] = o_total[cs]
                else:
                    oe = np.int64(o_head[cs])
                    while oe >= 0:
                        if oe_time[oe] <= t:
                            raw[R_CP_TOTAL] += 1
                            raw[R_CP_REPORTS] += oe_fraud[oe]
                        oe = np.int64(oe_next[oe])
        _finish(out[i], t, fen, row.balance_fen, row.account_opened_us, row.mcc, row.customer_age, typ, row.channel,
                row.risk_level, row.is_employee, row.cross_border, raw, ip, fp)
        if not apply:
            handles[i] = -1
            row_event[i] = -1
            row_slot[i] = -1
            row_ins[i] = 0
            row_ewma[i] = 0.0
            continue
        handles[i] = meta[M_NEXT_ID]
        meta[M_NEXT_ID] += 1
        meta[M_APPLIED] += 1
        row_slot[i] = slot
        row_ewma[i] = ewma
        last = h_last[slot]
        if last == _NO_TIME or t > last - ip[IP_RETENTION]:
            free = meta[M_FREE]
            if free >= 0:
                idx = free
                meta[M_FREE] = e_next[free]
            else:
                idx = meta[M_TOP]
                meta[M_TOP] += 1
            e_time[idx] = t
            e_amount[idx] = fen
            e_cp[idx] = cp
            e_branch[idx] = _branch32(row.branch_key) if typ == 3 else np.uint32(0)
            e_flags[idx] = _flags(t, fen, typ, ip)
            e_next[idx] = h_head[slot]
            h_head[slot] = idx
            h_n[slot] += 1
            if t < h_oldest[slot]:
                h_oldest[slot] = t
            meta[M_EVENTS] += 1
            row_event[i] = idx
        else:
            # Too late to matter for any window of the account: remembered only as a pruned time.
            row_event[i] = -1
            if h_pmax[slot] == _NO_TIME or t > h_pmax[slot]:
                h_pmax[slot] = t
        if last == _NO_TIME or t > last:
            h_last[slot] = t
        if meta[M_MAX_TIME] == _NO_TIME or t > meta[M_MAX_TIME]:
            meta[M_MAX_TIME] = t
        h_count[slot] = count + 1
        h_ewma[slot] = fen * 1.0 if ewma == 0.0 else ewma * (1.0 - weight) + fen * weight
        ins = 0
        if cp_new and _seen_insert(seen, _pair(acct, cp, _TAG_CP)):
            ins |= 1
            meta[M_SEEN] += 1
        if dev_unseen and _seen_insert(seen, _pair(acct, dev, _TAG_DEV)):
            ins |= 2
            meta[M_SEEN] += 1
        row_ins[i] = ins


@_jit
def _prune(slot: int, horizon: int, h_head: np.ndarray, h_n: np.ndarray, h_pmax: np.ndarray, h_oldest: np.ndarray,
           e_time: np.ndarray, e_next: np.ndarray, meta: np.ndarray) -> None:
    """Free the events of an account's chain at or before ``horizon``; its oldest time becomes exact again."""
    prev = -1
    oldest = _EMPTY_CHAIN
    e = np.int64(h_head[slot])
    while e >= 0:
        nxt = np.int64(e_next[e])
        if e_time[e] <= horizon:
            if prev < 0:
                h_head[slot] = nxt
            else:
                e_next[prev] = nxt
            if h_pmax[slot] == _NO_TIME or e_time[e] > h_pmax[slot]:
                h_pmax[slot] = e_time[e]
            e_next[e] = meta[M_FREE]
            meta[M_FREE] = e
            h_n[slot] -= 1
            meta[M_EVENTS] -= 1
        else:
            prev = int(e)
            if e_time[e] < oldest:
                oldest = e_time[e]
        e = nxt
    h_oldest[slot] = oldest


@_jit
def plan_blocked(
    ta: Arr, tc: Arr, td: Arr, tf: Arr, handles: Arr, blocked: Arr, row_ins: Arr, row_ewma: Arr, weight: float
) -> tuple[Arr, Arr, Arr]:
    """What blocking some applied rows of one call undoes (shared by the embedded and Redis backends).

    remove[i]: bit 1 / bit 2 = forget the counterparty / device that blocked row i registered, unless a later
    non-blocked row of the call uses it. ewma_set[i] marks the first blocked row of each account, and
    ewma_value[i] is that account's typical amount recomputed without its blocked rows.
    """
    n = ta.size
    remove = np.zeros(n, dtype=np.int8)
    ewma_set = np.zeros(n, dtype=np.bool_)
    ewma_value = np.zeros(n, dtype=np.float64)
    first = {np.uint64(0): 0}
    first.clear()
    for i in range(n):
        if handles[i] < 0:
            continue
        acct = ta[i]
        if blocked[i]:
            if acct not in first:
                first[acct] = i
                ewma_set[i] = True
                ewma_value[i] = row_ewma[i]
            for bit in (1, 2):
                if row_ins[i] & bit:
                    key = tc[i] if bit == 1 else td[i]
                    keep = False
                    for j in range(i + 1, n):
                        same = (tc[j] if bit == 1 else td[j]) == key
                        if handles[j] >= 0 and not blocked[j] and ta[j] == acct and same:
                            keep = True
                            break
                    if not keep:
                        remove[i] |= bit
        elif acct in first:
            j = first[acct]
            ewma = ewma_value[j]
            ewma_value[j] = tf[i] * 1.0 if ewma == 0.0 else ewma * (1.0 - weight) + tf[i] * weight
    return remove, ewma_set, ewma_value


@_jit
def branch_codes(tb: Arr, ttype: Arr) -> Arr:
    """The 32-bit branch code stored with each event (withdrawals only, else 0)."""
    out = np.zeros(tb.size, dtype=np.uint32)
    for i in range(tb.size):
        if ttype[i] == 3:
            out[i] = _branch32(tb[i])
    return out


@_jit
def commit_kernel(
    txns: Arr, handles: Arr, blocked: Arr, any_blocked: bool, row_event: Arr,
    row_slot: Arr, row_ins: Arr, row_ewma: Arr, ip: Arr, fp: Arr, h_head: Arr, h_n: Arr, h_last: Arr,
    h_pmax: Arr, h_ewma: Arr, h_oldest: Arr, e_time: Arr, e_next: Arr, e_flags: Arr, seen: Arr, meta: Arr,
) -> None:
    """Finalise applied rows: blocked rows become attempts (out of sums, seen sets, typical amount); then prune."""
    n = txns.size
    weight = fp[FP_WEIGHT]
    if any_blocked:
        ta = np.empty(n, dtype=np.uint64)
        tc = np.empty(n, dtype=np.uint64)
        td = np.empty(n, dtype=np.uint64)
        tf = np.empty(n, dtype=np.int64)
        for i in range(n):
            row = txns[i]
            ta[i] = row.account_key
            tc[i] = row.counterparty_key
            td[i] = row.device_key
            tf[i] = row.amount_fen
        remove, ewma_set, ewma_value = plan_blocked(ta, tc, td, tf, handles, blocked, row_ins, row_ewma, weight)
        for i in range(n):
            if handles[i] < 0 or not blocked[i]:
                continue
            if row_event[i] >= 0:
                e_flags[row_event[i]] |= FLAG_BLOCKED
            if remove[i] & 1 and _seen_delete(seen, _pair(ta[i], tc[i], _TAG_CP)):
                meta[M_SEEN] -= 1
            if remove[i] & 2 and _seen_delete(seen, _pair(ta[i], td[i], _TAG_DEV)):
                meta[M_SEEN] -= 1
            if ewma_set[i]:
                h_ewma[row_slot[i]] = ewma_value[i]
    # Events unlinked by score() become reusable now that no flag flip can touch them.
    while meta[M_DEFERRED] >= 0 and meta[M_DEFERRED_N] > 0:
        e = meta[M_DEFERRED]
        meta[M_DEFERRED] = e_next[e]
        e_next[e] = meta[M_FREE]
        meta[M_FREE] = e
        meta[M_DEFERRED_N] -= 1
        meta[M_EVENTS] -= 1
    retention = ip[IP_RETENTION]
    sweep = ip[IP_SWEEP]
    for i in range(n):
        if handles[i] < 0:
            continue
        # A few dormant accounts per applied row are pruned against the global watermark, so memory of
        # accounts that never come back is reclaimed in O(1) per row.
        horizon = meta[M_MAX_TIME] - retention
        for _ in range(sweep):
            c = meta[M_CURSOR]
            if c >= meta[M_ACCOUNTS]:
                c = 0
            # Only an account whose oldest event may have passed the horizon is walked: the header columns are read
            # in order, a chain's events are scattered over the arena.
            if meta[M_ACCOUNTS] > 0 and h_n[c] > 0 and h_oldest[c] <= horizon:
                _prune(c, horizon, h_head, h_n, h_pmax, h_oldest, e_time, e_next, meta)
            meta[M_CURSOR] = c + 1


@_jit
def outcome_kernel(
    cp: np.uint64, when: np.int64, fraud: bool, o_keys: Arr, o_slots: Arr, o_total: Arr, o_fraud: Arr,
    o_max: Arr, o_head: Arr, oe_time: Arr, oe_fraud: Arr, oe_next: Arr, meta: Arr,
) -> None:
    """Record one labelled outcome on a counterparty (capacity ensured by the caller)."""
    s = _table_find(o_keys, o_slots, cp)
    if s < 0:
        s = meta[M_CPS]
        meta[M_CPS] += 1
        _table_insert(o_keys, o_slots, cp, s)
        o_total[s] = 0
        o_fraud[s] = 0
        o_max[s] = _NO_TIME
        o_head[s] = -1
    idx = meta[M_OTOP]
    meta[M_OTOP] += 1
    oe_time[idx] = when
    oe_fraud[idx] = 1 if fraud else 0
    oe_next[idx] = o_head[s]
    o_head[s] = idx
    o_total[s] += 1
    o_fraud[s] += 1 if fraud else 0
    if o_max[s] == _NO_TIME or when > o_max[s]:
        o_max[s] = when
    meta[M_OUTCOMES] += 1
