"""Canonical transaction rows as ScoreRequests, and pools of serialized call payloads built before a run.

Conversion happens before the clock starts, so the client's CPU goes to sending. A ``RequestPool``
hands out payloads with a cursor: when the data is used up it is replayed one "round" later, every
transaction id suffixed ``~ROUND`` and every event time shifted by the data's span (whole weeks),
so transaction ids stay unique and business time keeps moving forward for a long-lived server.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from outpost.v1 import outpost_pb2 as pb

from loadtest._config import Method
from loadtest._errors import DataError

if TYPE_CHECKING:  # pandas is imported where frames are handled, so client processes start without it
    import pandas as pd

__all__ = ["REQUIRED_COLUMNS", "RequestPool", "frame_to_requests", "row_to_request"]

REQUIRED_COLUMNS: tuple[str, ...] = ("transaction_id", "event_time", "account_id", "amount_minor", "currency")
_STRING_COLUMNS: tuple[str, ...] = (
    "transaction_id", "account_id", "counterparty_id", "currency", "type", "channel", "device_id", "country",
    "region", "merchant_category", "counterparty_bank", "counterparty_country", "branch_id", "customer_id",
    "balance_currency", "risk_level",
)
_US_PER_S = 1_000_000
_WEEK_US = 7 * 86_400 * _US_PER_S


def _enum_lookup(enum: Any, prefix: str) -> dict[str, int]:
    """Short names ("TRANSFER_OUT"), full names ("TRANSACTION_TYPE_TRANSFER_OUT") and "" -> numbers."""
    table: dict[str, int] = {"": 0}
    for name, number in enum.items():
        table[name] = number
        if name.startswith(prefix):
            table[name[len(prefix):]] = number
    return table


_TYPES = _enum_lookup(pb.TransactionType, "TRANSACTION_TYPE_")
_CHANNELS = _enum_lookup(pb.Channel, "CHANNEL_")
_RISK_LEVELS = _enum_lookup(pb.RiskLevel, "RISK_LEVEL_")
_RISK_LEVELS["UNKNOWN"] = 0  # the simulator's name for "not assessed"


_PREFIXES = ("TRANSACTION_TYPE_", "CHANNEL_", "RISK_LEVEL_")


def _enum(table: Mapping[str, int], value: str, column: str, txn_id: str) -> int:
    number = table.get(value.strip().upper())
    if number is None:
        valid = ", ".join(sorted(k for k in table if k and not k.startswith(_PREFIXES)))
        raise DataError(f"transaction {txn_id!r}: {column}={value!r} is not a known name; use one of: {valid}")
    return number


def _text(value: object) -> str:
    """A string cell, with missing values (None, NaN, pandas NA) as ''."""
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _integer(value: object, column: str, txn_id: str, default: int = 0) -> int:
    text = _text(value)
    if text == "":
        return default
    try:
        return int(float(text)) if isinstance(value, float | str) else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise DataError(f"transaction {txn_id!r}: {column}={value!r} is not a whole number") from None


def _flag(value: object) -> bool:
    text = _text(value).strip().lower()
    return text in {"1", "1.0", "true", "yes", "y", "t"}


def _time_us(value: object, column: str, txn_id: str) -> int | None:
    """Microseconds since the Unix epoch (UTC) of a timestamp cell; None when missing."""
    if _text(value) == "":
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise DataError(f"transaction {txn_id!r}: {column}={value!r} is not a timestamp (use ISO 8601)") from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(dt.UTC)
    return int(stamp.value // 1000)


def _column_us(series: pd.Series, column: str) -> list[int | None]:
    """A timestamp column as epoch microseconds, vectorised when the column is a datetime dtype."""
    import pandas as pd

    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
        utc = series.dt.tz_convert("UTC") if isinstance(series.dtype, pd.DatetimeTZDtype) else series
        values = utc.to_numpy(dtype="datetime64[us]").astype(np.int64)
        missing = series.isna().to_numpy()
        return [None if m else int(v) for v, m in zip(values.tolist(), missing.tolist(), strict=True)]
    try:
        parsed = pd.to_datetime(series, utc=True, format="ISO8601")
    except (TypeError, ValueError) as exc:
        raise DataError(f"column {column!r} holds values that are not ISO 8601 timestamps ({exc})") from None
    return _column_us(parsed, column)


def row_to_request(row: Mapping[str, object], *, locale: str = "zh-CN") -> pb.ScoreRequest:
    """One canonical transaction row (a mapping of column -> value) as a ScoreRequest.

    Enum columns take the short proto names (``type=TRANSFER_OUT``, ``channel=TELLER``, ``risk_level=HIGH``);
    times are ISO 8601 strings, datetimes, pandas Timestamps or epoch microseconds (naive times are UTC).
    """
    missing = [c for c in REQUIRED_COLUMNS if _text(row.get(c)) == ""]
    if missing:
        raise DataError(f"row {dict(row)!r} lacks required columns {missing}; every row needs {list(REQUIRED_COLUMNS)}")
    text = {c: _text(row.get(c)) for c in _STRING_COLUMNS}
    txn_id = text["transaction_id"]
    event_us = _time_us(row["event_time"], "event_time", txn_id)
    assert event_us is not None  # required above
    return _build(
        text,
        txn_type=_enum(_TYPES, text["type"], "type", txn_id),
        channel=_enum(_CHANNELS, text["channel"], "channel", txn_id),
        risk_level=_enum(_RISK_LEVELS, text["risk_level"], "risk_level", txn_id),
        event_us=event_us,
        opened_us=_time_us(row.get("account_opened"), "account_opened", txn_id),
        birth_us=_time_us(row.get("birth_date"), "birth_date", txn_id),
        amount_minor=_integer(row["amount_minor"], "amount_minor", txn_id),
        age=_integer(row.get("customer_age"), "customer_age", txn_id),
        balance_minor=_integer(row.get("balance_minor"), "balance_minor", txn_id),
        is_employee=_flag(row.get("is_employee")),
        locale=locale,
    )


def _build(
    text: Mapping[str, str],
    *,
    txn_type: int,
    channel: int,
    risk_level: int,
    event_us: int,
    opened_us: int | None,
    birth_us: int | None,
    amount_minor: int,
    age: int,
    balance_minor: int,
    is_employee: bool,
    locale: str,
) -> pb.ScoreRequest:
    request = pb.ScoreRequest(
        transaction=pb.Transaction(
            transaction_id=text["transaction_id"],
            account_id=text["account_id"],
            counterparty_id=text["counterparty_id"],
            amount_minor=amount_minor,
            currency=text["currency"],
            type=txn_type,  # type: ignore[arg-type]
            channel=channel,  # type: ignore[arg-type]
            device_id=text["device_id"],
            country=text["country"],
            region=text["region"],
            merchant_category=text["merchant_category"],
            counterparty_bank=text["counterparty_bank"],
            counterparty_country=text["counterparty_country"],
            branch_id=text["branch_id"],
        ),
        customer=pb.Customer(
            customer_id=text["customer_id"],
            age=max(age, 0),
            balance_minor=balance_minor,
            balance_currency=text["balance_currency"],
            risk_level=risk_level,  # type: ignore[arg-type]
            is_employee=is_employee,
        ),
        locale=locale,
    )
    request.transaction.event_time.FromMicroseconds(event_us)
    if opened_us is not None:
        request.customer.account_opened.FromMicroseconds(opened_us)
    if birth_us is not None:
        request.customer.birth_date.FromMicroseconds(birth_us)
    return request


def _string_column(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return [""] * len(frame)
    values: list[str] = frame[column].astype("string").fillna("").tolist()
    return values


def _integer_column(frame: pd.DataFrame, column: str, default: int) -> list[int]:
    if column not in frame.columns:
        return [default] * len(frame)
    import pandas as pd

    raw = frame[column]
    blank = raw.isna() | (raw.astype("string").str.strip() == "")
    numbers = pd.to_numeric(raw.where(~blank, None), errors="coerce")
    bad = numbers.isna() & ~blank
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"transaction {frame['transaction_id'].iloc[first]!r}: {column}={raw.iloc[first]!r} is not a whole number"
        )
    values: list[int] = numbers.fillna(default).astype(np.int64).tolist()
    return values


def _enum_column(frame: pd.DataFrame, column: str, table: Mapping[str, int]) -> list[int]:
    import pandas as pd

    names = pd.Series(_string_column(frame, column), dtype="string").str.strip().str.upper()
    numbers = names.map(dict(table))
    unknown = numbers.isna()
    if unknown.any():
        first = int(np.flatnonzero(unknown.to_numpy())[0])
        _enum(table, str(names.iloc[first]), column, str(frame["transaction_id"].iloc[first]))  # raises
    values: list[int] = numbers.astype(np.int64).tolist()
    return values


def frame_to_requests(frame: pd.DataFrame, *, locale: str = "zh-CN") -> list[pb.ScoreRequest]:
    """Every row of a canonical transaction frame as a ScoreRequest, in row order (columns read once each)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"transaction data lacks columns {missing}; the canonical columns are {list(REQUIRED_COLUMNS)} "
            f"plus the optional {[c for c in _STRING_COLUMNS if c not in REQUIRED_COLUMNS]}, customer_age, "
            "birth_date, account_opened, balance_minor, is_employee"
        )
    n = len(frame)
    text_columns = {c: _string_column(frame, c) for c in _STRING_COLUMNS}
    types = _enum_column(frame, "type", _TYPES)
    channels = _enum_column(frame, "channel", _CHANNELS)
    risk_levels = _enum_column(frame, "risk_level", _RISK_LEVELS)
    event_us = _column_us(frame["event_time"], "event_time")
    opened_us = _column_us(frame["account_opened"], "account_opened") if "account_opened" in frame else [None] * n
    birth_us = _column_us(frame["birth_date"], "birth_date") if "birth_date" in frame else [None] * n
    amounts = _integer_column(frame, "amount_minor", 0)
    ages = _integer_column(frame, "customer_age", -1)
    balances = _integer_column(frame, "balance_minor", 0)
    employees = [_flag(v) for v in frame["is_employee"].tolist()] if "is_employee" in frame else [False] * n
    names = list(text_columns)
    requests: list[pb.ScoreRequest] = []
    for i, row_text in enumerate(zip(*text_columns.values(), strict=True)):
        text = dict(zip(names, row_text, strict=True))
        when = event_us[i]
        if when is None or not text["transaction_id"] or not text["account_id"]:
            raise DataError(
                f"row {i}: transaction_id, event_time and account_id are required, got {text['transaction_id']!r}"
            )
        requests.append(
            _build(
                text,
                txn_type=types[i],
                channel=channels[i],
                risk_level=risk_levels[i],
                event_us=when,
                opened_us=opened_us[i],
                birth_us=birth_us[i],
                amount_minor=amounts[i],
                age=ages[i],
                balance_minor=balances[i],
                is_employee=employees[i],
                locale=locale,
            )
        )
    return requests


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _batch_payload(items: Iterable[bytes]) -> bytes:
    """A serialized ScoreBatchRequest from serialized ScoreRequests (field 1, wire type 2: tag byte 0x0A)."""
    return b"".join(b"\x0a" + _varint(len(item)) + item for item in items)


class RequestPool:
    """ScoreRequests from the data, handed out as serialized call payloads with a moving cursor.

    Each ``take`` continues where the previous one stopped, so successive runs against the same
    server never repeat a transaction id or go back in business time.
    """

    def __init__(self, requests: list[pb.ScoreRequest]) -> None:
        if not requests:
            raise DataError("no transactions to send: the data is empty")
        self._requests = requests
        self._ids = [r.transaction.transaction_id for r in requests]
        self._times = [r.transaction.event_time.ToMicroseconds() for r in requests]
        if len(set(self._ids)) != len(self._ids):
            raise DataError("transaction ids in the data are not unique; a load test needs one id per transaction")
        span = max(self._times) - min(self._times) + 1
        self._shift_us = max(1, math.ceil(span / _WEEK_US)) * _WEEK_US
        self._cursor = 0  # transactions handed out so far, over all rounds

    def __len__(self) -> int:
        return len(self._requests)

    @property
    def handed_out(self) -> int:
        """Transactions handed out so far (over every round)."""
        return self._cursor

    def skip(self, count: int) -> None:
        """Move the cursor past ``count`` transactions (e.g. those a previous run already sent)."""
        if count < 0:
            raise DataError(f"cannot skip a negative number of transactions ({count})")
        self._cursor += count

    def next_requests(self, count: int) -> list[bytes]:
        """The next ``count`` serialized ScoreRequests (replaying later rounds when the data runs out)."""
        out: list[bytes] = []
        n = len(self._requests)
        for position in range(self._cursor, self._cursor + count):
            index, round_ = position % n, position // n
            request = self._requests[index]
            if round_:
                request.transaction.transaction_id = f"{self._ids[index]}~{round_}"
                request.transaction.event_time.FromMicroseconds(self._times[index] + round_ * self._shift_us)
                out.append(request.SerializeToString())
                request.transaction.transaction_id = self._ids[index]
                request.transaction.event_time.FromMicroseconds(self._times[index])
            else:
                out.append(request.SerializeToString())
        self._cursor += count
        return out

    def take(self, calls: int, *, method: Method, batch_size: int = 1) -> list[bytes]:
        """Payloads for ``calls`` calls of ``method``: one ScoreRequest each, or ``batch_size`` per ScoreBatch."""
        if method == "Score":
            return self.next_requests(calls)
        items = self.next_requests(calls * batch_size)
        return [_batch_payload(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
