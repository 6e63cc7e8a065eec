"""The compiled ScoreBatch decoder on wire encodings a protobuf parser accepts but a simple reader could misread:
fields repeated or out of order, unknown fields, wrong wire types, merged sub-messages, huge rates, bad bytes.
Each case must give what the Python path gives for the message protobuf parsed from the same bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from outpost.v1 import outpost_pb2 as pb

from features import TXN_DTYPE, FeatureConfig
from loadtest import frame_to_requests, simulated_transactions
from server._requests import _CHANNELS, _LOCALES, _RISK_LEVELS, _TYPES, RequestValidator
from server._wire import OK, PYTHON, WireDecoder

SKEW_DAYS = 400
US = 1_000_000


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes | int) -> bytes:
    tag = _varint(number << 3 | wire_type)
    if wire_type == 0:
        assert isinstance(payload, int)
        return tag + _varint(payload)
    assert isinstance(payload, bytes)
    if wire_type == 2:
        return tag + _varint(len(payload)) + payload
    return tag + payload


def _batch(*requests: bytes) -> bytes:
    return b"".join(_field(1, 2, r) for r in requests)


@pytest.fixture(scope="module")
def base() -> list[pb.ScoreRequest]:
    frame = simulated_transactions(200, seed=4).head(50).reset_index(drop=True)
    return frame_to_requests(frame)


def _now(requests: list[pb.ScoreRequest]) -> int:
    return max(r.transaction.event_time.seconds for r in requests) * US


def _decoder(config: FeatureConfig) -> WireDecoder:
    return WireDecoder(config, max_skew_us=SKEW_DAYS * 86_400 * US, locales=tuple(_LOCALES), types=_TYPES,
                       channels=_CHANNELS, risk_levels=_RISK_LEVELS)


def _check(wire: bytes, now: int, config: FeatureConfig | None = None) -> np.ndarray:
    """Decode ``wire`` both ways; assert the same outcome; return the decoder's statuses."""
    config = config or FeatureConfig()
    reqs = list(pb.ScoreBatchRequest.FromString(wire).requests)
    validator = RequestValidator(config, max_skew_days=SKEW_DAYS)
    want_violations, want = validator.check_and_encode(reqs, now)
    got_violations, got = validator.check_and_encode_wire(reqs, wire, now)
    assert got_violations == want_violations
    if want is None:
        assert got is None
    else:
        assert got is not None
        for name in want.dtype.names or ():
            assert np.array_equal(got.records[name], want[name]), name
        assert got.transaction_ids == [r.transaction.transaction_id for r in reqs]
        assert got.explain.tolist() == [r.explain for r in reqs]
    decoded = _decoder(config).decode(wire, len(reqs), now)
    assert decoded is not None
    return decoded.status


Case = Callable[[pb.ScoreRequest], bytes]


def _txn_bytes(req: pb.ScoreRequest) -> bytes:
    return req.transaction.SerializeToString()


def _without_event_time(req: pb.ScoreRequest) -> bytes:
    txn = pb.Transaction()
    txn.CopyFrom(req.transaction)
    txn.ClearField("event_time")
    return txn.SerializeToString()


CASES: dict[str, tuple[Case, int]] = {
    # name: (the request's bytes, the status the decoder must give)
    "fields in reverse order": (
        lambda r: _field(3, 2, r.locale.encode()) + _field(2, 2, r.customer.SerializeToString())
        + _field(1, 2, _txn_bytes(r)), OK),
    "scalar repeated, last wins": (
        lambda r: r.SerializeToString() + _field(5, 0, 1) + _field(5, 0, 0), OK),
    "dry_run set by its last copy": (lambda r: r.SerializeToString() + _field(5, 0, 0) + _field(5, 0, 7), OK),
    "locale repeated": (lambda r: r.SerializeToString() + _field(3, 2, b"fr") + _field(3, 2, b"en"), OK),
    "string inside the transaction repeated": (
        lambda r: _field(1, 2, _txn_bytes(r) + _field(3, 2, b"acct-2") + _field(4, 2, b"payee-9")), OK),
    "unknown fields at every level": (
        lambda r: _field(99, 0, 5) + _field(1, 2, _txn_bytes(r) + _field(77, 2, b"zz") + _field(78, 5, b"\0" * 4))
        + _field(2, 2, r.customer.SerializeToString() + _field(50, 1, b"\0" * 8)) + _field(300, 2, b"x"), OK),
    "event time with an unknown field": (
        lambda r: _field(1, 2, _without_event_time(r) + _field(2, 2, _field(9, 0, 1) + _field(
            1, 0, r.transaction.event_time.seconds))), OK),
    "explain with a wrong wire type": (lambda r: r.SerializeToString() + _field(4, 2, b"yes"), OK),
    "explain set, then sent with a wrong wire type": (
        lambda r: r.SerializeToString() + _field(4, 0, 3) + _field(4, 2, b"no"), OK),
    "explain set, then cleared by its last copy": (
        lambda r: r.SerializeToString() + _field(4, 0, 1) + _field(4, 0, 0), OK),
    "dry_run with a wrong wire type": (lambda r: r.SerializeToString() + _field(5, 2, b"1"), PYTHON),
    "amount with a wrong wire type": (lambda r: _field(1, 2, _txn_bytes(r) + _field(5, 1, b"\1" * 8)), PYTHON),
    "transaction sent twice (merged)": (
        lambda r: r.SerializeToString() + _field(1, 2, _field(5, 0, 777)), PYTHON),
    "customer sent twice (merged)": (lambda r: r.SerializeToString() + _field(2, 2, _field(3, 0, 44)), PYTHON),
    "event time sent twice (merged)": (
        lambda r: _field(1, 2, _txn_bytes(r) + _field(2, 2, _field(2, 0, 5000))), PYTHON),
    "negative enum (ten-byte varint)": (lambda r: _field(1, 2, _txn_bytes(r) + _field(7, 0, -3)), PYTHON),
    "type above the int32 range is truncated": (
        lambda r: _field(1, 2, _txn_bytes(r) + _field(7, 0, (1 << 32) + 5)), OK),
    "empty customer present": (lambda r: _field(1, 2, _txn_bytes(r)) + _field(2, 2, b""), OK),
    "Chinese region": (lambda r: _field(1, 2, _txn_bytes(r) + _field(11, 2, "深圳南山".encode())), PYTHON),
    "seconds beyond 10**12": (
        lambda r: _field(1, 2, _txn_bytes(r) + _field(2, 2, _field(1, 0, 10**13))), PYTHON),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_wire_variants_decode_like_protobuf(name: str, base: list[pb.ScoreRequest]) -> None:
    """One odd encoding among ordinary requests: same outcome as the Python path, decided where expected."""
    make, want_status = CASES[name]
    now = _now(base)
    odd = make(base[3])
    wire = _batch(*(r.SerializeToString() for r in base[:3]), odd, *(r.SerializeToString() for r in base[4:8]))
    status = _check(wire, now)
    assert status[3] == want_status
    assert not np.delete(status, 3).any()


def test_conversions_that_could_overflow_go_to_python(base: list[pb.ScoreRequest]) -> None:
    """A rate so large that amount * rate leaves 64 bits: Python's integers convert it, with the same result."""
    config = FeatureConfig(currency_rates={"CNY": "1", "XAU": "912345678901.25"})
    now = _now(base)
    big = pb.ScoreRequest()
    big.CopyFrom(base[0])
    big.transaction.currency = "XAU"
    big.transaction.amount_minor = 2_000_000  # 2 * amount * p leaves 64 bits; the fen value itself fits
    small = pb.ScoreRequest()
    small.CopyFrom(big)
    small.transaction.amount_minor = 3
    small.customer.balance_currency = "CNY"
    status = _check(_batch(big.SerializeToString(), small.SerializeToString()), now, config)
    assert status.tolist() == [PYTHON, OK]


def test_truncated_or_miscounted_bytes_fall_back_to_the_parsed_messages(base: list[pb.ScoreRequest]) -> None:
    """Bytes that do not hold the expected number of requests: the decoder says so and nothing is half-decoded."""
    wire = _batch(*(r.SerializeToString() for r in base[:4]))
    decoder = _decoder(FeatureConfig())
    now = _now(base)
    assert decoder.decode(wire[:-3], 4, now) is None
    assert decoder.decode(wire, 3, now) is None
    assert decoder.decode(wire, 5, now) is None
    reqs = list(base[:4])
    validator = RequestValidator(FeatureConfig(), max_skew_days=SKEW_DAYS)
    violations, batch = validator.check_and_encode_wire(reqs, wire[:-3], now)
    assert violations == [] and batch is not None and len(batch.records) == 4
    assert batch.transaction_ids == [r.transaction.transaction_id for r in reqs]


def test_amounts_worth_too_much_once_converted_are_rejected_with_a_reason(base: list[pb.ScoreRequest]) -> None:
    """An amount or balance worth more than 10**15 CNY at a configured rate is a named violation on every path,
    never an overflow: 10**15 minor units at a rate of 10**6 CNY."""
    config = FeatureConfig(currency_rates={"CNY": "1", "XAU": "1000000"})
    now = _now(base)
    pricey = pb.ScoreRequest()
    pricey.CopyFrom(base[0])
    pricey.transaction.currency = "XAU"
    pricey.transaction.amount_minor = 10**15
    rich = pb.ScoreRequest()
    rich.CopyFrom(base[1])
    rich.customer.balance_currency = "XAU"
    rich.customer.balance_minor = -(10**15)
    fine = pb.ScoreRequest()
    fine.CopyFrom(pricey)
    fine.transaction.amount_minor = 10**10  # 10**14 CNY: within the limit
    validator = RequestValidator(config, max_skew_days=SKEW_DAYS)
    violations = validator.score_request(pricey, now) + validator.score_request(rich, now)
    assert [(v.field, v.description.split(":")[0]) for v in violations] == [
        ("transaction.amount_minor", "worth more than 1,000,000,000,000,000 CNY at the configured rate of XAU"),
        ("customer.balance_minor", "worth more than 1,000,000,000,000,000 CNY at the configured rate of XAU"),
    ]
    status = _check(_batch(pricey.SerializeToString(), rich.SerializeToString(), fine.SerializeToString()), now,
                    config)
    assert status.tolist() == [PYTHON, PYTHON, OK]
    assert validator.check_and_encode_row(pricey, now)[1] is None
    assert validator.check_and_encode_row(fine, now)[1] is not None


_TEXT = st.one_of(st.sampled_from(["", "acct-1", "CN", "JP", "cn", "CNY", "USD", "5411", "0042", "zh-CN", "en",
                                   "x" * 128, "x" * 129]), st.text(max_size=12))
_INT64 = st.one_of(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1), st.integers(1, 10**15 + 1))
_INT32 = st.one_of(st.integers(-2, 160), st.integers(-(2**31), 2**31 - 1))


@st.composite
def _timestamps(draw: st.DrawFn, around: int) -> Timestamp:
    seconds = draw(st.one_of(st.integers(around - 10**8, around + 10**6), st.integers(-(10**13), 10**13)))
    return Timestamp(seconds=seconds, nanos=draw(st.one_of(st.integers(0, 999_999_999), st.integers(-5, 2**31 - 1))))


_TXN_TEXTS = ("transaction_id", "account_id", "counterparty_id", "currency", "device_id", "country", "region",
              "merchant_category", "counterparty_bank", "counterparty_country", "branch_id")


@st.composite
def _arbitrary_requests(draw: st.DrawFn, base: list[pb.ScoreRequest], around: int) -> pb.ScoreRequest:
    """A simulated request with one to three fields set to any value protobuf can carry (strings of any
    characters, integers across their whole range): mostly one bad field in an otherwise valid request."""
    req = pb.ScoreRequest()
    req.CopyFrom(draw(st.sampled_from(base)))
    t, c = req.transaction, req.customer
    def set_text(name: str) -> Callable[[Any], None]:
        return lambda v: setattr(t, name, v)

    changes: dict[str, tuple[Callable[[Any], object], st.SearchStrategy[Any]]] = {
        **{name: (set_text(name), _TEXT) for name in _TXN_TEXTS},
        "locale": (lambda v: setattr(req, "locale", v), _TEXT),
        "amount_minor": (lambda v: setattr(t, "amount_minor", v), _INT64),
        "type": (lambda v: setattr(t, "type", v), _INT32),
        "channel": (lambda v: setattr(t, "channel", v), _INT32),
        "event_time": (lambda v: t.event_time.CopyFrom(v), _timestamps(around)),
        "customer_id": (lambda v: setattr(c, "customer_id", v), _TEXT),
        "age": (lambda v: setattr(c, "age", v), _INT32),
        "balance_minor": (lambda v: setattr(c, "balance_minor", v), _INT64),
        "balance_currency": (lambda v: setattr(c, "balance_currency", v), _TEXT),
        "risk_level": (lambda v: setattr(c, "risk_level", v), _INT32),
        "birth_date": (lambda v: c.birth_date.CopyFrom(v), _timestamps(around)),
        "account_opened": (lambda v: c.account_opened.CopyFrom(v), _timestamps(around)),
        "no birth_date": (lambda v: c.ClearField("birth_date"), st.none()),
        "no customer": (lambda v: req.ClearField("customer"), st.none()),
    }
    for name in draw(st.lists(st.sampled_from(sorted(changes)), min_size=1, max_size=3, unique=True)):
        apply, values = changes[name]
        apply(draw(values))
    return req


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arbitrary_field_values_decode_like_the_python_path(base: list[pb.ScoreRequest], data: st.DataObject) -> None:
    """Batches of simulated requests, some with fields set to arbitrary values: same violations or records."""
    now = _now(base)
    odd = data.draw(st.lists(_arbitrary_requests(base, now // US), min_size=1, max_size=3))
    batch = [*base[:2], *odd]
    _check(pb.ScoreBatchRequest(requests=batch).SerializeToString(), now)


def _check_each(datas: list[bytes], now: int) -> None:
    """Score calls validated together (``check_and_encode_each``) get, each, what ``check_and_encode_row`` gives."""
    reqs = [pb.ScoreRequest.FromString(data) for data in datas]
    validator = RequestValidator(FeatureConfig(), max_skew_days=SKEW_DAYS)
    records, rejected = validator.check_and_encode_each(reqs, datas, now)
    for i, req in enumerate(reqs):
        violations, row = validator.check_and_encode_row(req, now)
        if violations:
            assert rejected.get(i) == violations, i
            continue
        assert i not in rejected, i
        want = np.array([row], dtype=TXN_DTYPE)
        for name in TXN_DTYPE.names or ():
            assert records[name][i] == want[name][0], (i, name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_score_calls_validated_together_equal_one_by_one(name: str, base: list[pb.ScoreRequest]) -> None:
    """A wire variant among plain requests, as queued Score calls: each judged alone, as the Python path would."""
    make, _ = CASES[name]
    datas = [base[1].SerializeToString(), make(base[0]), base[2].SerializeToString()]
    _check_each(datas, _now(base))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arbitrary_score_calls_validated_together_equal_one_by_one(
    base: list[pb.ScoreRequest], data: st.DataObject
) -> None:
    """Queued Score calls, some with fields set to arbitrary values (most of them invalid): each alone."""
    now = _now(base)
    odd = data.draw(st.lists(_arbitrary_requests(base, now // US), min_size=1, max_size=4))
    _check_each([r.SerializeToString() for r in [base[3], *odd, base[4]]], now)
