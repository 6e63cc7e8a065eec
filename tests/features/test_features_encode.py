"""encode_frame: the tabular format into TXN_DTYPE records, with the rules the server also follows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import (
    ENUMS,
    NO_BALANCE,
    NO_TIME,
    TABULAR_COLUMNS,
    EncodingError,
    FeatureConfig,
    encode_frame,
    stable_key,
)

T = pd.Timestamp("2026-03-15T10:30:00Z")


def frame(**overrides: object) -> pd.DataFrame:
    """A two-row frame with only the required columns, overridden per test."""
    data: dict[str, object] = {
        "transaction_id": ["t1", "t2"],
        "event_time": [T, T + pd.Timedelta(minutes=5)],
        "account_id": ["acc-1", "acc-2"],
        "amount_minor": [10_000, 250],
        "currency": ["CNY", "USD"],
        "type": ["TRANSFER_OUT", "CASH_WITHDRAWAL"],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_required_columns_and_defaults(config: FeatureConfig) -> None:
    """Only the required columns given: keys, money and enums encoded, every optional field at its default."""
    rec = encode_frame(frame(), config)
    assert rec["event_time_us"][0] == T.value // 1000
    assert rec["account_key"].tolist() == [stable_key("acc-1"), stable_key("acc-2")]
    assert rec["amount_fen"].tolist() == [10_000, config.to_fen("USD", 250)]
    types = ENUMS["TransactionType"]
    assert rec["txn_type"].tolist() == [types["TRANSFER_OUT"], types["CASH_WITHDRAWAL"]]
    assert (rec["counterparty_key"] == 0).all() and (rec["device_key"] == 0).all()
    assert (rec["balance_fen"] == NO_BALANCE).all() and (rec["account_opened_us"] == NO_TIME).all()
    assert (rec["customer_age"] == -1).all() and (rec["channel"] == 0).all() and (rec["risk_level"] == 0).all()
    assert (rec["apply"] == 1).all() and (rec["cross_border"] == 0).all()


def test_time_formats_agree(config: FeatureConfig) -> None:
    """datetime64, ISO-8601 strings with offsets and epoch microseconds give the same event_time_us."""
    micros = T.value // 1000
    as_datetime = encode_frame(frame(event_time=[T, T]), config)
    as_text = encode_frame(frame(event_time=["2026-03-15T18:30:00+08:00", "2026-03-15T10:30:00Z"]), config)
    as_int = encode_frame(frame(event_time=np.array([micros, micros], dtype=np.int64)), config)
    times = as_datetime["event_time_us"].tolist()
    assert times == as_text["event_time_us"].tolist() == as_int["event_time_us"].tolist()


def test_all_columns(config: FeatureConfig) -> None:
    """Every optional column is encoded by the documented rule; labels and unknown columns are ignored."""
    df = frame(
        counterparty_id=["cp-9", None],
        channel=["teller", "CHANNEL_ATM"],
        device_id=["", "dev-3"],
        country=["CN", "cn"],
        counterparty_country=["HK", ""],
        merchant_category=["5411", ""],
        branch_id=["b-1", "b-2"],
        customer_age=[33, 40],
        birth_date=[pd.Timestamp("1990-03-16T00:00:00Z"), pd.NaT],
        account_opened=["2020-01-01T00:00:00Z", None],
        balance_minor=pd.array([5_000, None], dtype="Int64"),
        balance_currency=["EUR", ""],
        risk_level=["HIGH", "RISK_LEVEL_LOW"],
        is_employee=[1, 0],
        is_fraud=[1, 0],
        typology=["mule", ""],
        region=["440300", "110000"],
    )
    rec = encode_frame(df, config)
    assert rec["counterparty_key"].tolist() == [stable_key("cp-9"), 0]
    assert rec["device_key"].tolist() == [0, stable_key("dev-3")]
    assert rec["branch_key"].tolist() == [stable_key("b-1"), stable_key("b-2")]
    assert rec["channel"].tolist() == [ENUMS["Channel"]["TELLER"], ENUMS["Channel"]["ATM"]]
    assert rec["cross_border"].tolist() == [1, 0]
    assert rec["mcc"].tolist() == [5411, 0]
    assert rec["customer_age"].tolist() == [35, 40]  # birthday is tomorrow: still 35; else customer_age
    assert rec["account_opened_us"][0] == pd.Timestamp("2020-01-01T00:00:00Z").value // 1000
    assert rec["account_opened_us"][1] == NO_TIME
    assert rec["balance_fen"].tolist() == [config.to_fen("EUR", 5_000), NO_BALANCE]
    assert rec["risk_level"].tolist() == [3, 1]
    assert rec["is_employee"].tolist() == [1, 0]


def test_age_on_the_birthday(config: FeatureConfig) -> None:
    """A customer born on the event's calendar date (UTC) has completed the year."""
    rec = encode_frame(frame(birth_date=["2000-03-15", "2000-03-16"]), config)
    assert rec["customer_age"].tolist() == [26, 25]


@pytest.mark.parametrize(
    ("overrides", "row", "column"),
    [
        ({"currency": ["CNY", "XYZ"]}, 1, "currency"),
        ({"type": ["TRANSFER_OUT", "LOTTERY"]}, 1, "type"),
        ({"event_time": ["2026-03-15T10:30:00Z", "yesterday"]}, 1, "event_time"),
        ({"amount_minor": [0, 10]}, 0, "amount_minor"),
        ({"amount_minor": [1.5, 10]}, 0, "amount_minor"),
        ({"account_id": ["a", ""]}, 1, "account_id"),
        ({"merchant_category": ["", "grocery"]}, 1, "merchant_category"),
        ({"is_employee": [0, 2]}, 1, "is_employee"),
    ],
)
def test_bad_rows_name_row_and_column(
    config: FeatureConfig, overrides: dict[str, object], row: int, column: str
) -> None:
    """A bad value raises EncodingError carrying the row position and the column."""
    with pytest.raises(EncodingError) as caught:
        encode_frame(frame(**overrides), config)
    assert (caught.value.row, caught.value.column) == (row, column)
    assert f"row {row}" in str(caught.value)


def test_missing_required_column(config: FeatureConfig) -> None:
    """A frame without a required column is refused, naming it."""
    with pytest.raises(EncodingError, match="currency"):
        encode_frame(frame().drop(columns=["currency"]), config)


def test_tabular_columns_are_the_documented_ones() -> None:
    """TABULAR_COLUMNS lists the canonical columns in order, starting with the identifiers and time."""
    assert TABULAR_COLUMNS[:3] == ("transaction_id", "event_time", "account_id")
    assert "balance_currency" in TABULAR_COLUMNS and "is_fraud" not in TABULAR_COLUMNS


def test_large_frame(config: FeatureConfig) -> None:
    """A frame of 200k rows encodes (vectorised path) and keeps row order."""
    n = 200_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "event_time": np.arange(n, dtype=np.int64) * 1_000_000 + T.value // 1000,
        "account_id": rng.integers(0, 5_000, n).astype(str),
        "amount_minor": rng.integers(1, 10**6, n),
        "currency": rng.choice(["CNY", "USD", "JPY"], n),
        "type": rng.choice(["TRANSFER_OUT", "TRANSFER_IN"], n),
    })
    rec = encode_frame(df, config)
    assert len(rec) == n
    assert (np.diff(rec["event_time_us"]) == 1_000_000).all()
    sample = rng.integers(0, n, 50)
    for i in sample:
        assert rec["amount_fen"][i] == config.to_fen(df["currency"][i], int(df["amount_minor"][i]))
