"""Reading labelled transactions from any CSV or Parquet file into the canonical tabular format.

A column mapping says, for each canonical column, which column of the file holds it
(``{"account_id": "acct_no", "event_time": "ts", ...}``, ours -> theirs). A value starting
with ``=`` is a constant for every row (``{"currency": "=CNY"}``). The mapping can be given as
a dict or as a JSON/YAML file. Columns the file lacks and the mapping does not name are left
out; ``features.encode_frame`` gives optional ones their defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from models._errors import DataError

__all__ = ["CANONICAL_COLUMNS", "REQUIRED_COLUMNS", "load_transactions", "read_mapping"]

CANONICAL_COLUMNS: tuple[str, ...] = (
    "transaction_id", "event_time", "account_id", "counterparty_id", "amount_minor", "currency", "type", "channel",
    "device_id", "country", "region", "merchant_category", "counterparty_bank", "counterparty_country", "branch_id",
    "customer_id", "customer_age", "birth_date", "account_opened", "balance_minor", "balance_currency", "risk_level",
    "is_employee", "is_fraud", "typology",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("event_time", "account_id", "amount_minor", "currency", "type")


def read_mapping(mapping: Mapping[str, str] | Path | str | None) -> dict[str, str]:
    """A column mapping (ours -> theirs) from a dict, a JSON or YAML file, or None (identity)."""
    if mapping is None:
        return {}
    if isinstance(mapping, Mapping):
        result = {str(k): str(v) for k, v in mapping.items()}
    else:
        path = Path(mapping)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(f"cannot read the column mapping {path}: {exc}") from exc
        if path.suffix.lower() == ".json":
            loaded = json.loads(text)
        else:
            import yaml

            loaded = yaml.safe_load(text)
        if not isinstance(loaded, dict):
            raise DataError(
                f"{path} must hold a mapping of canonical column -> file column, got {type(loaded).__name__}"
            )
        result = {str(k): str(v) for k, v in loaded.items()}
    unknown = sorted(set(result) - set(CANONICAL_COLUMNS))
    if unknown:
        raise DataError(f"the column mapping names unknown canonical columns {unknown}; "
                        f"valid keys are {list(CANONICAL_COLUMNS)}")
    return result


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".gz", ".txt"):
            return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    raise DataError(f"{path}: unknown file type {suffix!r}; use .csv or .parquet")


def load_transactions(path: Path | str, mapping: Mapping[str, str] | Path | str | None = None) -> pd.DataFrame:
    """Canonical transactions from a CSV or Parquet file, renamed through ``mapping``, sorted by event time."""
    path = Path(path)
    raw = _read_table(path)
    columns = read_mapping(mapping)
    frame = pd.DataFrame(index=raw.index)
    for ours in CANONICAL_COLUMNS:
        theirs = columns.get(ours, ours)
        if theirs.startswith("="):
            frame[ours] = theirs[1:]
        elif theirs in raw.columns:
            frame[ours] = raw[theirs]
        elif ours in columns:
            raise DataError(f"{path}: the mapping takes {ours!r} from column {theirs!r}, which the file lacks; "
                            f"its columns are {list(raw.columns)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column for {missing}; map them, e.g. --mapping with "
                        + ", ".join(f"{c}: <their column>" for c in missing))
    try:
        frame["event_time"] = _parse_times(frame["event_time"])
        frame["amount_minor"] = pd.to_numeric(frame["amount_minor"]).astype(np.int64)
        for col in ("customer_age", "is_employee", "is_fraud"):
            if col in frame.columns:
                frame[col] = pd.to_numeric(frame[col].replace("", np.nan)).fillna(-1 if col == "customer_age" else 0)
                frame[col] = frame[col].astype(np.int64)
        if "balance_minor" in frame.columns:
            frame["balance_minor"] = pd.to_numeric(frame["balance_minor"].replace("", np.nan)).astype("Int64")
        for col in ("account_opened", "birth_date"):
            if col in frame.columns:
                frame[col] = _parse_times(frame[col].replace("", None))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: {exc}; check the column mapping and the file's formats") from exc
    if "typology" in frame.columns:
        frame["typology"] = frame["typology"].fillna("").astype(str)
    if "transaction_id" not in frame.columns:
        frame["transaction_id"] = [f"{path.stem}-{i}" for i in range(len(frame))]
    return frame.sort_values("event_time", kind="stable").reset_index(drop=True)


def _parse_times(values: pd.Series) -> pd.Series:
    """UTC timestamps from datetimes, ISO-8601 strings or integer epoch microseconds."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True)
    numeric = pd.to_numeric(values, errors="coerce")
    if len(values) and numeric.notna().all():
        return pd.to_datetime(numeric.astype(np.int64), unit="us", utc=True)
    return pd.to_datetime(values, utc=True, format="ISO8601")
