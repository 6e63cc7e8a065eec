"""Native decoding of a ScoreBatchRequest's wire bytes into transaction records (features.TXN_DTYPE).

ScoreBatch used to spend most of its per-transaction Python time reading protobuf fields one by one. This
kernel walks the protobuf wire format of the whole batch in compiled code, applies the checks of
``RequestValidator._scan`` and builds each record, keying identifiers with ``features.stable_key_bytes``. It also
notes where each transaction_id lies in the bytes and each request's explain flag, which the reply needs.

It decides only the common case. A request it is not certain about gets status ``PYTHON`` and the caller sends
it through the Python path, which decides validity and words any violation exactly as before:

- any check that fails (the Python path words it);
- text with a byte outside printable ASCII (Unicode printability is Python's to judge);
- a sub-message sent twice (protobuf merges them), a known field with an unexpected wire type, a group;
- an amount or balance whose conversion could overflow 64 bits or is worth more than ``_MAX_FEN``, a timestamp
  beyond +-10**12 seconds.

Scalars and strings sent twice keep the last value, as protobuf parsers do.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeAlias

import numba
import numpy as np

from features import NO_BALANCE, NO_TIME, TXN_DTYPE, FeatureConfig, stable_key_bytes

__all__ = ["OK", "PYTHON", "DecodedBatch", "WireDecoder", "warm"]

# Numba keys the cache of these kernels on this file's own timestamp and size, yet they compile in code and
# constants from the files below (stable_key_bytes, NO_TIME, NO_BALANCE). So a change there must change this
# file too, or a warm cache would keep running the old code: tests/test_compiled_in.py fails until these
# digests (sha256, first 16 hex digits) are updated, and updating them invalidates the cache.
COMPILED_IN = {
    "features/_keys.py": "6cc439697f52f11b",
    "features/_schema.py": "12c9ea8b38a868a3",
}

OK = 0
PYTHON = 1

_US = 1_000_000
_MAX_ID = 128
_MAX_AMOUNT_MINOR = 10**15
_MAX_FEN = 10**17  # as server._requests: the most an amount or balance may be worth in fen
_YEAR_1850_US = -3_786_825_600 * _US
_ONE_DAY_US = 86_400 * _US
_MAX_SECONDS = 10**12  # beyond this, seconds * 10**6 nears int64's range: the Python path decides
_SAFE_PRODUCT = 1 << 62  # 2 * amount * p must stay below this

# Slots of the per-request scratch array. Strings take two (start, end), timestamps three (set, seconds, nanos).
_T_ID, _T_EVENT, _T_ACCOUNT, _T_CP, _T_AMOUNT, _T_CURRENCY, _T_TYPE, _T_CHANNEL = 0, 2, 5, 7, 9, 10, 12, 13
_T_DEVICE, _T_COUNTRY, _T_REGION, _T_MCC, _T_BANK, _T_CP_COUNTRY, _T_BRANCH = 14, 16, 18, 20, 22, 24, 26
_C_ID, _C_BIRTH, _C_AGE, _C_OPENED, _C_BALANCE, _C_BAL_CURRENCY, _C_LEVEL, _C_EMPLOYEE = 28, 30, 33, 34, 37, 38, 40, 41
_R_TXN, _R_CUSTOMER, _R_LOCALE, _R_DRY_RUN, _R_EXPLAIN = 42, 43, 44, 46, 47
_SLOTS = 48

# Positions, sizes and values inside the kernels: Python ints or numpy int64s alike (numba types them itself).
_Int: TypeAlias = int | np.integer[Any]

# Field kinds of the tables below.
_STR, _I64, _I32, _BOOL, _TS = 1, 2, 3, 4, 5


def _table(entries: dict[int, tuple[int, int]]) -> np.ndarray:
    """(field number -> (kind, slot)) as a (max field + 1, 2) int64 array; kind 0 = not a known field."""
    table = np.zeros((max(entries) + 1, 2), dtype=np.int64)
    for number, (kind, slot) in entries.items():
        table[number] = (kind, slot)
    return table


_TRANSACTION = _table({
    1: (_STR, _T_ID), 2: (_TS, _T_EVENT), 3: (_STR, _T_ACCOUNT), 4: (_STR, _T_CP), 5: (_I64, _T_AMOUNT),
    6: (_STR, _T_CURRENCY), 7: (_I32, _T_TYPE), 8: (_I32, _T_CHANNEL), 9: (_STR, _T_DEVICE),
    10: (_STR, _T_COUNTRY), 11: (_STR, _T_REGION), 12: (_STR, _T_MCC), 13: (_STR, _T_BANK),
    14: (_STR, _T_CP_COUNTRY), 15: (_STR, _T_BRANCH),
})
_CUSTOMER = _table({
    1: (_STR, _C_ID), 2: (_TS, _C_BIRTH), 3: (_I32, _C_AGE), 4: (_TS, _C_OPENED), 5: (_I64, _C_BALANCE),
    6: (_I32, _C_LEVEL), 7: (_STR, _C_BAL_CURRENCY), 8: (_BOOL, _C_EMPLOYEE),
})


@numba.njit(cache=True, nogil=True, inline="always")
def _varint(buf: np.ndarray, pos: _Int, end: _Int) -> tuple[np.uint64, _Int]:
    """(value, position after it); position -1 when the varint runs past ``end``."""
    value = np.uint64(0)
    shift = 0
    while pos < end and shift < 64:
        b = buf[pos]
        pos += 1
        value |= np.uint64(b & 0x7F) << np.uint64(shift)
        if b < 0x80:
            return value, pos
        shift += 7
    return value, -1


@numba.njit(cache=True, nogil=True, inline="always")
def _as_int32(value: np.uint64) -> _Int:
    low = np.int64(value & np.uint64(0xFFFFFFFF))
    return low - (1 << 32) if low >= (1 << 31) else low


@numba.njit(cache=True, nogil=True, inline="always")
def _tag(buf: np.ndarray, pos: _Int, end: _Int) -> tuple[_Int, _Int, _Int]:
    """(field number, wire type, position after the tag); position -1 when malformed."""
    tag, pos = _varint(buf, pos, end)
    return np.int64(tag >> np.uint64(3)), np.int64(tag & np.uint64(7)), pos


@numba.njit(cache=True, nogil=True, inline="always")
def _length(buf: np.ndarray, pos: _Int, end: _Int) -> tuple[_Int, _Int]:
    """(start, stop) of the length-delimited value at ``pos``; stop -1 when it runs past ``end``."""
    size, pos = _varint(buf, pos, end)
    if pos < 0 or np.int64(size) > end - pos:
        return pos, -1
    return pos, pos + np.int64(size)


@numba.njit(cache=True, nogil=True, inline="always")
def _scalar(buf: np.ndarray, pos: _Int, end: _Int, wire_type: _Int) -> tuple[np.uint64, _Int]:
    """(value, position after it) of a varint field; position -1 when malformed or of another wire type."""
    if wire_type != 0:
        return np.uint64(0), -1
    return _varint(buf, pos, end)


@numba.njit(cache=True, nogil=True)
def _skip(buf: np.ndarray, pos: _Int, end: _Int, wire_type: _Int) -> _Int:
    """Position after an unknown field's value; -1 when malformed or a group (left to protobuf)."""
    if wire_type == 0:
        _, pos = _varint(buf, pos, end)
        return pos
    if wire_type == 1:
        return pos + 8 if pos + 8 <= end else -1
    if wire_type == 5:
        return pos + 4 if pos + 4 <= end else -1
    if wire_type == 2:
        return _length(buf, pos, end)[1]
    return -1


@numba.njit(cache=True, nogil=True)
def _timestamp(buf: np.ndarray, pos: _Int, end: _Int, f: np.ndarray, slot: _Int) -> bool:
    if f[slot]:
        return False  # sent twice: protobuf merges the two, which is the Python path's business
    f[slot] = 1
    while pos >= 0 and pos < end:
        number, wire_type, pos = _tag(buf, pos, end)
        if pos < 0:
            return False
        if number == 1 or number == 2:
            value, pos = _scalar(buf, pos, end, wire_type)
            if number == 1:
                f[slot + 1] = np.int64(value)
            else:
                f[slot + 2] = _as_int32(value)
        else:
            pos = _skip(buf, pos, end, wire_type)
    return pos == end


@numba.njit(cache=True, nogil=True)
def _fields(buf: np.ndarray, pos: _Int, end: _Int, table: np.ndarray, f: np.ndarray) -> bool:
    """Read one message's known scalar, string and timestamp fields into their slots; False: leave it to Python."""
    while pos >= 0 and pos < end:
        number, wire_type, pos = _tag(buf, pos, end)
        if pos < 0:
            return False
        kind = table[number, 0] if number < table.shape[0] else 0
        slot = table[number, 1] if kind else 0
        if kind == 0:
            pos = _skip(buf, pos, end, wire_type)
        elif kind in (_STR, _TS):
            if wire_type != 2:
                return False
            start, pos = _length(buf, pos, end)
            if pos < 0:
                return False
            if kind == _STR:
                f[slot] = start
                f[slot + 1] = pos
            elif not _timestamp(buf, start, pos, f, slot):
                return False
        else:
            value, pos = _scalar(buf, pos, end, wire_type)
            if kind == _I64:
                f[slot] = np.int64(value)
            elif kind == _I32:
                f[slot] = _as_int32(value)
            else:
                f[slot] = 1 if value != 0 else 0
    return pos == end


@numba.njit(cache=True, nogil=True)
def _request(buf: np.ndarray, pos: _Int, end: _Int, f: np.ndarray) -> bool:
    """Read one ScoreRequest into ``f`` (reset beforehand); False: leave it to the Python path."""
    while pos >= 0 and pos < end:
        number, wire_type, pos = _tag(buf, pos, end)
        if pos < 0:
            return False
        if number == 1 or number == 2 or number == 3:  # transaction, customer, locale
            if wire_type != 2:
                return False
            start, pos = _length(buf, pos, end)
            if pos < 0:
                return False
            if number == 3:
                f[_R_LOCALE] = start
                f[_R_LOCALE + 1] = pos
            else:
                presence = _R_TXN if number == 1 else _R_CUSTOMER
                if f[presence]:
                    return False  # sent twice: merged by protobuf
                f[presence] = 1
                if not _fields(buf, start, pos, _TRANSACTION if number == 1 else _CUSTOMER, f):
                    return False
        elif number == 5 or (number == 4 and wire_type == 0):  # dry_run, explain (for the reply)
            value, pos = _scalar(buf, pos, end, wire_type)
            f[_R_DRY_RUN if number == 5 else _R_EXPLAIN] = 1 if value != 0 else 0
        else:
            pos = _skip(buf, pos, end, wire_type)
    return pos == end


@numba.njit(cache=True, nogil=True)
def _text(buf: np.ndarray, f: np.ndarray, slot: _Int) -> bool:
    """At most 128 bytes, all printable ASCII (non-ASCII text goes to the Python path)."""
    start = f[slot]
    stop = f[slot + 1]
    if stop - start > _MAX_ID:
        return False
    for i in range(start, stop):
        b = buf[i]
        if b < 0x20 or b > 0x7E:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _equals(buf: np.ndarray, f: np.ndarray, slot: _Int, table: np.ndarray, row: _Int, size: _Int) -> bool:
    start = f[slot]
    if f[slot + 1] - start != size:
        return False
    for j in range(size):  # noqa: SIM110 (an explicit loop: compiled code, no generator)
        if buf[start + j] != table[row, j]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _currency(buf: np.ndarray, f: np.ndarray, slot: _Int, codes: np.ndarray) -> _Int:
    """Row of the currency in ``codes`` (three bytes each), or -1 when unknown."""
    if f[slot + 1] - f[slot] != 3:
        return -1
    for row in range(codes.shape[0]):
        if _equals(buf, f, slot, codes, row, 3):
            return row
    return -1


@numba.njit(cache=True, nogil=True)
def _country(buf: np.ndarray, f: np.ndarray, slot: _Int) -> _Int:
    """0: absent; 1: two capital letters; -1: anything else."""
    start = f[slot]
    size = f[slot + 1] - start
    if size == 0:
        return 0
    if size != 2:
        return -1
    for i in range(start, start + 2):
        if buf[i] < 65 or buf[i] > 90:  # A..Z
            return -1
    return 1


@numba.njit(cache=True, nogil=True)
def _civil(days: _Int) -> tuple[_Int, _Int, _Int]:
    """(year, month, day) of a count of days since 1970-01-01 (proleptic Gregorian)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if month <= 2 else 0), month, day


@numba.njit(cache=True, nogil=True)
def _age_years(birth_us: _Int, event_us: _Int) -> _Int:
    by, bm, bd = _civil(birth_us // _ONE_DAY_US)
    ey, em, ed = _civil(event_us // _ONE_DAY_US)
    return ey - by - (1 if em < bm or (em == bm and ed < bd) else 0)


@numba.njit(cache=True, nogil=True)
def _micros(f: np.ndarray, slot: _Int) -> _Int:
    """Microseconds of the timestamp in ``slot``; NO_TIME when its nanos or seconds are out of range."""
    seconds = int(f[slot + 1])
    nanos = int(f[slot + 2])
    if nanos < 0 or nanos >= 1_000_000_000 or seconds > _MAX_SECONDS or seconds < -_MAX_SECONDS:
        return NO_TIME
    return seconds * _US + nanos // 1000


@numba.njit(cache=True, nogil=True)
def _convert(amount: _Int, p: _Int, q: _Int) -> tuple[bool, _Int]:
    """(fits, fen): amount_minor * p / q rounded half up, when 2 * |amount| * p fits 64 bits."""
    magnitude = amount if amount >= 0 else -amount
    if p > 0 and magnitude >= _SAFE_PRODUCT // (2 * p):
        return False, 0
    return True, (2 * amount * p + q) // (2 * q)


@numba.njit(cache=True, nogil=True)
def _decode(
    buf: np.ndarray,
    out: np.ndarray,
    status: np.ndarray,
    params: np.ndarray,
    locales: np.ndarray,
    locale_sizes: np.ndarray,
    codes: np.ndarray,
    ratios: np.ndarray,
    enums: np.ndarray,
    id_spans: np.ndarray,
    explain: np.ndarray,
) -> _Int:
    """Decode a ScoreBatchRequest into ``out`` / ``status`` / ``id_spans`` / ``explain``; returns the number of
    requests found.

    ``params``: now_us, max_skew_us, home country's two bytes. ``enums``: (3, 256) accepted values of
    TransactionType, Channel and RiskLevel.
    """
    now_us, max_skew = params[0], params[1]
    home0, home1 = params[2], params[3]
    f = np.zeros(_SLOTS, dtype=np.int64)
    n = 0
    pos: _Int = 0
    end = buf.shape[0]
    while pos < end:
        number, wire_type, pos = _tag(buf, pos, end)
        if pos < 0:
            return -1
        if number != 1 or wire_type != 2:
            pos = _skip(buf, pos, end, wire_type)
            if pos < 0:
                return -1
            continue
        start, pos = _length(buf, pos, end)
        if pos < 0 or n >= out.shape[0]:
            return -1
        f[:] = 0
        ok = _request(buf, start, pos, f) and _row(buf, f, out, n, now_us, max_skew, home0, home1, locales,
                                                   locale_sizes, codes, ratios, enums)
        status[n] = OK if ok else PYTHON
        id_spans[n, 0] = f[_T_ID]
        id_spans[n, 1] = f[_T_ID + 1]
        explain[n] = f[_R_EXPLAIN]
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _row(
    buf: np.ndarray,
    f: np.ndarray,
    out: np.ndarray,
    i: _Int,
    now_us: _Int,
    max_skew: _Int,
    home0: _Int,
    home1: _Int,
    locales: np.ndarray,
    locale_sizes: np.ndarray,
    codes: np.ndarray,
    ratios: np.ndarray,
    enums: np.ndarray,
) -> bool:
    """Check one read request as ``RequestValidator._scan`` does and write its record; False: not accepted."""
    # locale
    size = f[_R_LOCALE + 1] - f[_R_LOCALE]
    known = False
    for row in range(locales.shape[0]):
        if locale_sizes[row] == size and _equals(buf, f, _R_LOCALE, locales, row, size):
            known = True
            break
    if not known or not f[_R_TXN]:
        return False
    # identifiers and texts
    if f[_T_ID + 1] == f[_T_ID] or f[_T_ACCOUNT + 1] == f[_T_ACCOUNT]:
        return False
    for slot in (_T_ID, _T_ACCOUNT, _T_CP, _T_DEVICE, _T_BRANCH, _T_REGION, _T_BANK, _C_ID):
        if not _text(buf, f, slot):
            return False
    # event time
    if not f[_T_EVENT]:
        return False
    event_us = _micros(f, _T_EVENT)
    if event_us == NO_TIME or abs(event_us - now_us) > max_skew:
        return False
    # money, type, channel, countries, merchant category
    amount = f[_T_AMOUNT]
    currency = _currency(buf, f, _T_CURRENCY, codes)
    if currency < 0 or not 0 < amount <= _MAX_AMOUNT_MINOR:
        return False
    txn_type = f[_T_TYPE]
    channel = f[_T_CHANNEL]
    if not (0 <= txn_type < 256 and enums[0, txn_type]) or not (0 <= channel < 256 and enums[1, channel]):
        return False
    country = _country(buf, f, _T_COUNTRY)
    cp_country = _country(buf, f, _T_CP_COUNTRY)
    if country < 0 or cp_country < 0:
        return False
    mcc = 0
    mcc_start = f[_T_MCC]
    mcc_size = f[_T_MCC + 1] - mcc_start
    if mcc_size > 4:
        return False
    for j in range(mcc_start, mcc_start + mcc_size):
        digit = buf[j]
        if digit < 48 or digit > 57:
            return False
        mcc = 10 * mcc + (digit - 48)
    # customer
    age = f[_C_AGE]
    balance = f[_C_BALANCE]
    level = f[_C_LEVEL]
    if not 0 <= age <= 150 or abs(balance) > _MAX_AMOUNT_MINOR or not (0 <= level < 256 and enums[2, level]):
        return False
    balance_currency = currency
    has_balance_currency = f[_C_BAL_CURRENCY + 1] > f[_C_BAL_CURRENCY]
    if has_balance_currency:
        balance_currency = _currency(buf, f, _C_BAL_CURRENCY, codes)
        if balance_currency < 0:
            return False
    if f[_C_BIRTH]:
        birth_us = _micros(f, _C_BIRTH)
        if birth_us == NO_TIME or birth_us < _YEAR_1850_US or birth_us > event_us:
            return False
        age = _age_years(birth_us, event_us)
    elif age <= 0:
        age = -1
    opened_us: _Int = NO_TIME
    if f[_C_OPENED]:
        opened_us = _micros(f, _C_OPENED)
        if opened_us == NO_TIME or opened_us < _YEAR_1850_US or opened_us > event_us + _ONE_DAY_US:
            return False
    balance_fen: _Int = NO_BALANCE
    if balance != 0 or has_balance_currency:
        fits, balance_fen = _convert(balance, ratios[balance_currency, 0], ratios[balance_currency, 1])
        if not fits or balance_fen > _MAX_FEN or balance_fen < -_MAX_FEN:
            return False
    fits, amount_fen = _convert(amount, ratios[currency, 0], ratios[currency, 1])
    if not fits or amount_fen > _MAX_FEN:
        return False
    cross = (country == 1 and not (buf[f[_T_COUNTRY]] == home0 and buf[f[_T_COUNTRY] + 1] == home1)) or (
        cp_country == 1 and not (buf[f[_T_CP_COUNTRY]] == home0 and buf[f[_T_CP_COUNTRY] + 1] == home1)
    )
    rec = out[i]
    rec.event_time_us = event_us
    rec.account_key = stable_key_bytes(buf, f[_T_ACCOUNT], f[_T_ACCOUNT + 1])
    rec.counterparty_key = stable_key_bytes(buf, f[_T_CP], f[_T_CP + 1])
    rec.device_key = stable_key_bytes(buf, f[_T_DEVICE], f[_T_DEVICE + 1])
    rec.branch_key = stable_key_bytes(buf, f[_T_BRANCH], f[_T_BRANCH + 1])
    rec.amount_minor = amount
    rec.amount_fen = amount_fen
    rec.balance_fen = balance_fen
    rec.account_opened_us = opened_us
    rec.mcc = mcc
    rec.customer_age = age
    rec.txn_type = txn_type
    rec.channel = channel
    rec.risk_level = level
    rec.is_employee = f[_C_EMPLOYEE]
    rec.cross_border = 1 if cross else 0
    rec.apply = 0 if f[_R_DRY_RUN] else 1
    return True


class DecodedBatch(NamedTuple):
    """What ``WireDecoder.decode`` read. Rows whose status is ``PYTHON`` have undefined values in every array."""

    records: np.ndarray  # (n,) TXN_DTYPE
    status: np.ndarray  # (n,) int8: OK or PYTHON
    id_spans: np.ndarray  # (n, 2) int64: start and end of the transaction_id's bytes in the wire
    explain: np.ndarray  # (n,) bool: the request's explain flag

    def transaction_ids(self, wire: bytes) -> list[str]:
        """Each row's transaction_id (printable ASCII in OK rows); ``""`` in PYTHON rows."""
        rows = zip(self.id_spans.tolist(), (self.status == OK).tolist(), strict=True)
        return [wire[start:end].decode("ascii") if ok else "" for (start, end), ok in rows]


class WireDecoder:
    """Decodes ScoreBatchRequest bytes into records with the checks of the Python path, for one feature config."""

    def __init__(self, config: FeatureConfig, *, max_skew_us: int, locales: tuple[str, ...],
                 types: frozenset[int], channels: frozenset[int], risk_levels: frozenset[int]) -> None:
        home = config.home_country.encode("ascii")
        self._max_skew_us = max_skew_us
        self._home = (home[0], home[1]) if len(home) == 2 else (0, 0)
        encoded = [loc.encode("utf-8") for loc in locales]
        self._locales = np.zeros((len(encoded), max(len(e) for e in encoded) or 1), dtype=np.uint8)
        for row, code in enumerate(encoded):
            self._locales[row, : len(code)] = np.frombuffer(code, dtype=np.uint8)
        self._locale_sizes = np.array([len(e) for e in encoded], dtype=np.int64)
        currencies = sorted(c for c in config.currency_rates if len(c.encode("utf-8")) == 3)
        self._codes = np.array([list(c.encode("ascii")) for c in currencies], dtype=np.uint8).reshape(-1, 3)
        self._ratios = np.array([config.fen_ratio(c) for c in currencies], dtype=np.int64).reshape(-1, 2)
        self._enums = np.zeros((3, 256), dtype=np.uint8)
        for row, values in enumerate((types, channels, risk_levels)):
            for value in values:
                if 0 <= value < 256:
                    self._enums[row, value] = 1

    def decode(self, wire: bytes, count: int, now_us: int) -> DecodedBatch | None:
        """The ``count`` requests in ``wire``; None when the bytes hold another count.

        ``status[i]`` is ``OK`` when row i is accepted and its record written, ``PYTHON`` when the Python path
        must decide request i (its record row is then undefined).
        """
        out = np.empty(count, dtype=TXN_DTYPE)
        status = np.empty(count, dtype=np.int8)
        id_spans = np.empty((count, 2), dtype=np.int64)
        explain = np.empty(count, dtype=np.bool_)
        params = np.array([now_us, self._max_skew_us, self._home[0], self._home[1]], dtype=np.int64)
        buf = np.frombuffer(wire, dtype=np.uint8)
        found = int(_decode(buf, out, status, params, self._locales, self._locale_sizes, self._codes, self._ratios,
                            self._enums, id_spans, explain))
        if found != count:
            return None
        return DecodedBatch(out, status, id_spans, explain)


def warm() -> None:
    """Load the compiled decoder (from numba's cache, or compile it) now rather than at the first ScoreBatch."""
    WireDecoder(FeatureConfig(), max_skew_us=0, locales=("",), types=frozenset(), channels=frozenset(),
                risk_levels=frozenset()).decode(b"", 0, 0)
