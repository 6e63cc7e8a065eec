"""Canonical rows as ScoreRequests, the request pool's unique ids, and ScoreBatch payloads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from outpost.v1 import outpost_pb2 as pb

from loadtest import DataError, RequestPool, frame_to_requests, load_transactions, row_to_request

ROW: dict[str, object] = {
    "transaction_id": "T-1",
    "event_time": "2026-03-02T08:15:30.250Z",
    "account_id": "6222000000000001",
    "counterparty_id": "6217000000009999",
    "amount_minor": 1_250_000,
    "currency": "CNY",
    "type": "TRANSFER_OUT",
    "channel": "TELLER",
    "device_id": "",
    "country": "CN",
    "region": "440304",
    "merchant_category": "",
    "counterparty_bank": "ICBC",
    "counterparty_country": "HK",
    "branch_id": "SZB007",
    "customer_id": "C00000001",
    "customer_age": 71,
    "account_opened": "2010-05-01T00:00:00Z",
    "balance_minor": 3_000_000,
    "balance_currency": "CNY",
    "risk_level": "HIGH",
    "is_employee": 1,
}


def _frame(n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        row = dict(ROW)
        row["transaction_id"] = f"T-{i}"
        row["event_time"] = pd.Timestamp("2026-03-02T08:00:00Z") + pd.Timedelta(minutes=i)
        row["account_id"] = f"62220000000000{i % 3:02d}"
        row["type"] = ["TRANSFER_OUT", "CARD_PAYMENT", "CASH_WITHDRAWAL"][i % 3]
        row["channel"] = ["TELLER", "POS", "ATM"][i % 3]
        rows.append(row)
    return pd.DataFrame(rows)


def test_row_maps_every_column_to_its_field() -> None:
    """Each canonical column lands in its ScoreRequest field, enums by short name, times to the microsecond."""
    request = row_to_request(ROW, locale="en")
    txn, customer = request.transaction, request.customer
    assert txn.transaction_id == "T-1"
    assert txn.event_time.ToDatetime(tzinfo=dt.UTC) == dt.datetime(2026, 3, 2, 8, 15, 30, 250_000, tzinfo=dt.UTC)
    assert (txn.account_id, txn.counterparty_id) == ("6222000000000001", "6217000000009999")
    assert (txn.amount_minor, txn.currency) == (1_250_000, "CNY")
    assert txn.type == pb.TRANSACTION_TYPE_TRANSFER_OUT
    assert txn.channel == pb.CHANNEL_TELLER
    assert (txn.country, txn.region, txn.branch_id) == ("CN", "440304", "SZB007")
    assert (txn.counterparty_bank, txn.counterparty_country) == ("ICBC", "HK")
    assert customer.customer_id == "C00000001"
    assert customer.age == 71
    assert customer.account_opened.ToDatetime(tzinfo=dt.UTC) == dt.datetime(2010, 5, 1, tzinfo=dt.UTC)
    assert (customer.balance_minor, customer.balance_currency) == (3_000_000, "CNY")
    assert customer.risk_level == pb.RISK_LEVEL_HIGH
    assert customer.is_employee is True
    assert request.locale == "en"


def test_birth_date_is_sent_when_given() -> None:
    """A birth_date column becomes Customer.birth_date (the server prefers it to customer_age)."""
    request = row_to_request(ROW | {"birth_date": "1955-02-01"})
    assert request.customer.birth_date.ToDatetime(tzinfo=dt.UTC) == dt.datetime(1955, 2, 1, tzinfo=dt.UTC)
    frame = _frame(2).assign(birth_date=["1955-02-01", ""])
    by_frame = frame_to_requests(frame)
    assert by_frame[0].customer.HasField("birth_date")
    assert not by_frame[1].customer.HasField("birth_date")


def test_optional_columns_may_be_absent() -> None:
    """A row with only the required columns converts, leaving optional fields at their defaults."""
    row = {k: ROW[k] for k in ("transaction_id", "event_time", "account_id", "amount_minor", "currency")}
    request = row_to_request(row)
    assert request.transaction.type == pb.TRANSACTION_TYPE_UNSPECIFIED
    assert not request.customer.HasField("account_opened")
    assert request.customer.age == 0


def test_unknown_enum_name_is_reported_with_the_transaction() -> None:
    """An unknown type name raises DataError naming the transaction and the valid names."""
    with pytest.raises(DataError, match=r"T-1.*WIRE.*TRANSFER_OUT"):
        row_to_request(ROW | {"type": "WIRE"})
    with pytest.raises(DataError, match=r"T-2.*channel.*BRANCH"):
        frame_to_requests(_frame(4).assign(channel=["POS", "POS", "BRANCH", "POS"]))


def test_missing_required_value_is_rejected() -> None:
    """A row without an account id is refused rather than sent half-filled."""
    with pytest.raises(DataError, match="account_id"):
        row_to_request(ROW | {"account_id": ""})


def test_frame_conversion_equals_row_conversion() -> None:
    """The vectorised frame path builds exactly the requests the per-row path builds."""
    frame = _frame(7)
    by_frame = frame_to_requests(frame)
    by_row = [row_to_request(row) for row in frame.to_dict("records")]
    assert by_frame == by_row
    assert [r.transaction.type for r in by_frame[:3]] == [
        pb.TRANSACTION_TYPE_TRANSFER_OUT, pb.TRANSACTION_TYPE_CARD_PAYMENT, pb.TRANSACTION_TYPE_CASH_WITHDRAWAL]


def test_csv_file_round_trip(tmp_path: Path) -> None:
    """A canonical CSV file read with load_transactions gives the same requests as the frame it was written from."""
    frame = _frame(5)
    path = tmp_path / "txns.csv"
    frame.assign(event_time=frame["event_time"].map(lambda t: t.isoformat())).to_csv(path, index=False)
    assert frame_to_requests(load_transactions(path)) == frame_to_requests(frame)


def test_pool_replays_with_unique_ids_and_later_times() -> None:
    """Past the end of the data the pool replays it with suffixed ids and event times moved past the data."""
    requests = frame_to_requests(_frame(5))
    pool = RequestPool(requests)
    first = [pb.ScoreRequest.FromString(b) for b in pool.take(3, method="Score")]
    rest = [pb.ScoreRequest.FromString(b) for b in pool.take(9, method="Score")]
    ids = [r.transaction.transaction_id for r in first + rest]
    assert len(set(ids)) == 12
    assert ids[5] == "T-0~1" and ids[10] == "T-0~2"
    times = [r.transaction.event_time.ToMicroseconds() for r in first + rest]
    assert min(times[5:10]) > max(times[:5])
    assert pool.handed_out == 12
    # The pool's own messages are left as they were.
    assert requests[0].transaction.transaction_id == "T-0"


def test_batch_payload_parses_as_score_batch_request() -> None:
    """A ScoreBatch payload is a valid ScoreBatchRequest holding batch_size consecutive transactions."""
    pool = RequestPool(frame_to_requests(_frame(10)))
    payloads = pool.take(2, method="ScoreBatch", batch_size=4)
    batches = [pb.ScoreBatchRequest.FromString(p) for p in payloads]
    assert [len(b.requests) for b in batches] == [4, 4]
    assert [r.transaction.transaction_id for r in batches[1].requests] == ["T-4", "T-5", "T-6", "T-7"]


def test_duplicate_ids_are_refused() -> None:
    """Data with a repeated transaction id is refused: each call must carry a unique id."""
    requests = frame_to_requests(_frame(3))
    with pytest.raises(DataError, match="unique"):
        RequestPool([*requests, requests[0]])
