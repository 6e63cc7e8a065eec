"""Encoding of tabular transactions (pandas) into TXN_DTYPE records, vectorised, with errors naming row and column."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from features._catalogue import ENUMS
from features._config import FeatureConfig
from features._errors import EncodingError, FeatureConfigError
from features._schema import NO_BALANCE, NO_TIME, TXN_DTYPE, stable_key

__all__ = ["TABULAR_COLUMNS", "encode_frame"]

TABULAR_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "event_time",
    "account_id",
    "counterparty_id",
    "amount_minor",
    "currency",
    "type",
    "channel",
    "device_id",
    "country",
    "region",
    "merchant_category",
    "counterparty_bank",
    "counterparty_country",
    "branch_id",
    "customer_id",
    "customer_age",
    "birth_date",
    "account_opened",
    "balance_minor",
    "balance_currency",
    "risk_level",
    "is_employee",
)
_REQUIRED = ("event_time", "account_id", "amount_minor", "currency", "type")
_INT64_MAX = np.iinfo(np.int64).max


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _factorized(df: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct stripped strings) of a text column; missing values and absent columns are ''."""
    n = len(df)
    if column not in df.columns:
        return np.zeros(n, dtype=np.intp), np.array([""], dtype=object)
    codes, uniques = pd.factorize(df[column], use_na_sentinel=True)
    # Strip and stringify each distinct value once, not each row; index -1 (missing) maps to the final ''.
    texts = [v.strip() if isinstance(v, str) else str(v) for v in np.asarray(uniques, dtype=object)]
    return np.asarray(codes, dtype=np.intp), np.array([*texts, ""], dtype=object)


def _text(df: pd.DataFrame, column: str) -> np.ndarray:
    """The column as an object array of stripped strings ('' for missing)."""
    codes, texts = _factorized(df, column)
    return np.asarray(texts[codes], dtype=object)


def _upper(df: pd.DataFrame, column: str) -> np.ndarray:
    codes, texts = _factorized(df, column)
    return np.asarray(np.array([t.upper() for t in texts], dtype=object)[codes], dtype=object)


def _keys(df: pd.DataFrame, column: str) -> np.ndarray:
    codes, texts = _factorized(df, column)
    table = np.fromiter((stable_key(str(t)) for t in texts), dtype=np.uint64, count=len(texts))
    return np.asarray(table[codes], dtype=np.uint64)


def _times(df: pd.DataFrame, column: str, required: bool) -> np.ndarray:
    """Microseconds since the epoch (UTC); NO_TIME where missing (an error when required)."""
    n = len(df)
    if column not in df.columns:
        if required:
            raise EncodingError(0, column, "required column is missing")
        return np.full(n, NO_TIME, dtype=np.int64)
    series = df[column]
    missing = series.isna().to_numpy()
    if pd.api.types.is_integer_dtype(series.dtype) and not missing.any():
        out = series.to_numpy(dtype=np.int64).copy()
    elif pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~missing & (values != np.floor(values))
        if bad.any():
            raise EncodingError(_first_bad(bad), column, "epoch microseconds must be whole numbers")
        out = np.where(missing, 0, values).astype(np.int64)
    else:
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            parsed = series if getattr(series.dt, "tz", None) is not None else series.dt.tz_localize("UTC")
        else:
            parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
        unparsed = parsed.isna().to_numpy() & ~missing
        if unparsed.any():
            row = _first_bad(unparsed)
            raise EncodingError(
                row, column, f"cannot read {series.iloc[row]!r} as an ISO-8601 time or epoch microseconds"
            )
        utc = parsed.dt.tz_convert("UTC").dt.as_unit("us")
        out = utc.astype("int64").to_numpy(dtype=np.int64, na_value=0)
    if missing.any():
        if required:
            raise EncodingError(_first_bad(missing), column, "a time is required")
        out = np.where(missing, NO_TIME, out)
    return np.asarray(out, dtype=np.int64)


def _integers(df: pd.DataFrame, column: str, default: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(values int64, missing mask); missing values are an error when default is None."""
    n = len(df)
    if column not in df.columns:
        if default is None:
            raise EncodingError(0, column, "required column is missing")
        return np.full(n, default, dtype=np.int64), np.ones(n, dtype=np.bool_)
    series = df[column]
    missing = series.isna().to_numpy()
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        numeric = pd.to_numeric(series, errors="coerce")
        unreadable = numeric.isna().to_numpy() & ~missing
        if unreadable.any():
            row = _first_bad(unreadable)
            raise EncodingError(row, column, f"expected an integer, got {series.iloc[row]!r}")
        series = numeric
    if pd.api.types.is_bool_dtype(series.dtype):
        values = series.fillna(False).to_numpy(dtype=np.int64)
    elif pd.api.types.is_integer_dtype(series.dtype):
        values = series.to_numpy(dtype=np.int64, na_value=0)
    else:
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~missing & ((floats != np.floor(floats)) | (np.abs(floats) > 2.0**62))
        if bad.any():
            row = _first_bad(bad)
            raise EncodingError(row, column, f"expected an integer, got {series.iloc[row]!r}")
        values = np.where(missing, 0, floats).astype(np.int64)
    if missing.any():
        if default is None:
            raise EncodingError(_first_bad(missing), column, "a value is required")
        values = np.where(missing, default, values)
    return values, missing


def _enum(df: pd.DataFrame, column: str, enum: str, prefix: str, required: bool) -> np.ndarray:
    members = ENUMS[enum]
    if column not in df.columns:
        if required:
            raise EncodingError(0, column, "required column is missing")
        return np.zeros(len(df), dtype=np.int8)
    codes, texts = _factorized(df, column)
    table = np.zeros(len(texts), dtype=np.int8)
    for index, raw in enumerate(texts):
        name = str(raw).upper().removeprefix(prefix)
        if name == "" and not required:
            continue
        if name not in members:
            if not (codes == index).any() and index == len(texts) - 1:
                continue  # the '' slot for missing values, unused
            row = _first_bad(codes == index)
            raise EncodingError(row, column, f"{raw!r} is not one of {', '.join(members)}")
        table[index] = members[name]
    return np.asarray(table[codes], dtype=np.int8)


def _to_fen(config: FeatureConfig, amounts: np.ndarray, currencies: np.ndarray, column: str) -> np.ndarray:
    """config.to_fen row by row, vectorised per currency (Python integers where int64 could overflow)."""
    out = np.zeros(len(amounts), dtype=np.int64)
    codes, uniques = pd.factorize(currencies)
    for index, code in enumerate(uniques):
        rows = codes == index
        try:
            p, q = config.fen_ratio(str(code))
        except FeatureConfigError:
            raise EncodingError(
                _first_bad(rows), column, f"unknown currency {code!r}; add a rate to FeatureConfig.currency_rates"
            ) from None
        selected = amounts[rows]
        biggest = int(np.abs(selected).max()) if selected.size else 0
        if (2 * biggest + 1) * p < _INT64_MAX and 2 * q < _INT64_MAX:
            out[rows] = (2 * selected * p + q) // (2 * q)
        else:
            exact = [(2 * int(a) * p + q) // (2 * q) for a in selected]
            if any(abs(v) > _INT64_MAX for v in exact):
                raise EncodingError(_first_bad(rows), column, "amount too large to express in fen")
            out[rows] = np.array(exact, dtype=np.int64)
    return out


def _ages(df: pd.DataFrame, event_time: np.ndarray) -> np.ndarray:
    ages, _ = _integers(df, "customer_age", -1)
    if "birth_date" in df.columns:
        birth = _times(df, "birth_date", required=False)
        known = birth != NO_TIME
        if known.any():
            et = pd.to_datetime(event_time[known], unit="us", utc=True)
            bd = pd.to_datetime(birth[known], unit="us", utc=True)
            years = et.year.to_numpy() - bd.year.to_numpy()
            event_day = et.month.to_numpy() * 100 + et.day.to_numpy()
            before_birthday = event_day < bd.month.to_numpy() * 100 + bd.day.to_numpy()
            ages = ages.copy()
            ages[known] = years - before_birthday.astype(np.int64)
    return np.asarray(np.clip(ages, -1, 32_767), dtype=np.int64)


def encode_frame(df: pd.DataFrame, config: FeatureConfig) -> np.ndarray:
    """Encode a DataFrame in the tabular format (``TABULAR_COLUMNS``) into TXN_DTYPE records, apply=1.

    Required columns: event_time, account_id, amount_minor, currency, type; every other column may be missing
    and takes its default; is_fraud, typology and unknown columns are ignored. The server encodes protobuf
    requests with the same rules, which are:

    - event_time: pandas datetime64 (naive means UTC), ISO-8601 strings, or int64 epoch microseconds.
    - account_key / counterparty_key / device_key / branch_key: ``stable_key`` of the identifier text
      (stripped; empty or missing -> 0). transaction_id, region, counterparty_bank, customer_id are not encoded.
    - amount_fen: ``config.to_fen(currency, amount_minor)``; amount_minor must be a whole number > 0 and the
      currency must have a rate.
    - txn_type / channel / risk_level: enum names as in ``features.ENUMS`` ("TRANSFER_OUT", "TELLER", "HIGH"),
      case-insensitive, the proto prefix ("TRANSACTION_TYPE_", "CHANNEL_", "RISK_LEVEL_") allowed; a missing
      channel or risk level is 0 (unspecified / UNKNOWN).
    - mcc: merchant_category parsed as an integer, 0 when missing or empty.
    - cross_border: 1 when country or counterparty_country is set and differs from ``config.home_country``
      (compared upper-case).
    - customer_age: whole years from birth_date to event_time (calendar dates in UTC; one year is added on
      the birthday) when birth_date is set, else customer_age, else -1.
    - account_opened_us: account_opened as a time, NO_TIME when missing.
    - balance_fen: ``config.to_fen(balance_currency or currency, balance_minor)``, NO_BALANCE when
      balance_minor is missing (NA).
    - is_employee: 0/1 (missing -> 0).

    Raises ``EncodingError`` (a ``FeatureError``) naming the first bad row (position in ``df``) and column.
    """
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise EncodingError(0, missing[0], f"required column is missing (required: {', '.join(_REQUIRED)})")
    n = len(df)
    out = np.zeros(n, dtype=TXN_DTYPE)
    event_time = _times(df, "event_time", required=True)
    out["event_time_us"] = event_time
    out["account_key"] = _keys(df, "account_id")
    if n and not out["account_key"].all():
        raise EncodingError(_first_bad(out["account_key"] == 0), "account_id", "an account id is required")
    out["counterparty_key"] = _keys(df, "counterparty_id")
    out["device_key"] = _keys(df, "device_id")
    out["branch_key"] = _keys(df, "branch_id")
    amounts, _ = _integers(df, "amount_minor", None)
    if (amounts <= 0).any():
        raise EncodingError(_first_bad(amounts <= 0), "amount_minor", "amounts must be > 0 minor units")
    out["amount_minor"] = amounts
    currencies = _upper(df, "currency")
    if n and (currencies == "").any():
        raise EncodingError(_first_bad(currencies == ""), "currency", "a currency code is required")
    out["amount_fen"] = _to_fen(config, amounts, currencies, "currency")
    balances, no_balance = _integers(df, "balance_minor", 0)
    balance_currencies = _upper(df, "balance_currency")
    balance_currencies = np.where(balance_currencies == "", currencies, balance_currencies) if n else balance_currencies
    known = ~no_balance
    balance_fen = np.full(n, NO_BALANCE, dtype=np.int64)
    if known.any():
        column = "balance_currency" if "balance_currency" in df.columns else "currency"
        converted = _to_fen(config, balances[known], balance_currencies[known], column)
        balance_fen[known] = converted
    out["balance_fen"] = balance_fen
    out["account_opened_us"] = _times(df, "account_opened", required=False)
    mcc_text = _text(df, "merchant_category")
    mcc_numeric = pd.to_numeric(pd.Series(np.where(mcc_text == "", "0", mcc_text) if n else mcc_text), errors="coerce")
    bad_mcc = mcc_numeric.isna().to_numpy() | (mcc_numeric.to_numpy(dtype=np.float64, na_value=0) % 1 != 0)
    if bad_mcc.any():
        row = _first_bad(bad_mcc)
        raise EncodingError(
            row, "merchant_category", f"expected a numeric merchant category code, got {mcc_text[row]!r}"
        )
    out["mcc"] = mcc_numeric.to_numpy(dtype=np.float64, na_value=0).astype(np.int32)
    out["customer_age"] = _ages(df, event_time)
    enum: Callable[[str, str, str, bool], np.ndarray] = lambda c, e, p, r: _enum(df, c, e, p, r)  # noqa: E731
    out["txn_type"] = enum("type", "TransactionType", "TRANSACTION_TYPE_", True)
    out["channel"] = enum("channel", "Channel", "CHANNEL_", False)
    out["risk_level"] = enum("risk_level", "RiskLevel", "RISK_LEVEL_", False)
    employee, _ = _integers(df, "is_employee", 0)
    if ((employee != 0) & (employee != 1)).any():
        raise EncodingError(_first_bad((employee != 0) & (employee != 1)), "is_employee", "expected 0 or 1")
    out["is_employee"] = employee
    home = config.home_country.upper()
    country = _upper(df, "country")
    cp_country = _upper(df, "counterparty_country")
    if n:
        out["cross_border"] = ((country != "") & (country != home)) | ((cp_country != "") & (cp_country != home))
    out["apply"] = 1
    return out
