"""The one-pass request path (RequestValidator.check_and_encode) and the compiled ScoreBatch decoder
(check_and_encode_wire) reject and encode exactly like the reference pair score_request + encode_requests: same
violations in the same order, same records, on simulated traffic and on requests with each field made invalid in
turn."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from outpost.v1 import outpost_pb2 as pb

from features import TXN_DTYPE, FeatureConfig
from loadtest import frame_to_requests, row_to_request, simulated_transactions
from server._requests import (
    _CHANNELS,
    _LOCALES,
    _RISK_LEVELS,
    _TYPES,
    FieldViolation,
    RequestValidator,
    encode_requests,
)
from server._wire import OK, PYTHON, WireDecoder

CONFIG = FeatureConfig()
US = 1_000_000
DAY_US = 86_400 * US
SKEW_DAYS = 400
Mutation = Callable[[pb.ScoreRequest], object]


def _set_time(ts: object, micros: int, nanos: int | None = None) -> None:
    ts.FromMicroseconds(micros)  # type: ignore[attr-defined]
    if nanos is not None:
        ts.nanos = nanos  # type: ignore[attr-defined]


def _event_us(req: pb.ScoreRequest) -> int:
    return req.transaction.event_time.seconds * US + req.transaction.event_time.nanos // 1000


@pytest.fixture(scope="module")
def traffic() -> list[pb.ScoreRequest]:
    """About 3000 simulated requests, varied in every optional part the encoder reads."""
    frame = simulated_transactions(3000, seed=11).head(3000).reset_index(drop=True)
    requests = frame_to_requests(frame)
    requests[:20] = [row_to_request(row) for row in frame.head(20).to_dict("records")]
    rng = random.Random(5)
    for i, req in enumerate(requests):
        event = _event_us(req)
        req.locale = rng.choice(["", "zh-CN", "zh", "zh-Hans", "en", "en-US", "en-GB"])
        req.explain = rng.random() < 0.1
        req.dry_run = rng.random() < 0.1
        c = req.customer
        if i % 7 == 0:
            _set_time(c.birth_date, event - rng.randrange(18 * 365, 90 * 365) * DAY_US - rng.randrange(DAY_US))
        if i % 11 == 0:
            c.balance_currency = rng.choice(["USD", "HKD", "JPY", "EUR"])
        if i % 13 == 0:
            req.ClearField("customer")
        if i % 17 == 0:
            req.transaction.country = rng.choice(["US", "HK", "CN"])
            req.transaction.counterparty_country = rng.choice(["", "GB", "CN"])
        if i % 19 == 0:
            req.transaction.merchant_category = rng.choice(["5411", "7", "0042", "9999"])
        if i % 23 == 0:
            c.is_employee = True
            c.risk_level = pb.RISK_LEVEL_HIGH
        if i % 29 == 0:
            c.balance_minor = -rng.randrange(1, 10**6)
        if i % 31 == 0:
            req.transaction.currency = rng.choice(["USD", "JPY", "KWD"])
        if i % 37 == 0:
            c.ClearField("account_opened")
    return requests


def _now(requests: list[pb.ScoreRequest]) -> int:
    """A wall clock inside the simulated period, so the skew check passes for valid traffic."""
    return max(_event_us(r) for r in requests)


def _expected(
    validator: RequestValidator, reqs: list[pb.ScoreRequest], now: int, indexed: bool
) -> list[FieldViolation]:
    """The reference: score_request on every request, in order."""
    return [
        v
        for i, r in enumerate(reqs)
        for v in validator.score_request(r, now, prefix=f"requests[{i}]." if indexed else "")
    ]


def _wire(
    validator: RequestValidator, reqs: list[pb.ScoreRequest], now: int
) -> tuple[list[FieldViolation], np.ndarray | None]:
    """The ScoreBatch path: the batch's bytes through the compiled decoder (its ids and explain flags checked
    against the parsed messages here)."""
    violations, batch = validator.check_and_encode_wire(
        reqs, pb.ScoreBatchRequest(requests=reqs).SerializeToString(), now
    )
    if batch is None:
        return violations, None
    assert batch.transaction_ids == [r.transaction.transaction_id for r in reqs]
    assert batch.explain.tolist() == [r.explain for r in reqs]
    return violations, batch.records


def _assert_same_records(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    for name in want.dtype.names or ():
        bad = np.flatnonzero(got[name] != want[name])
        assert not bad.size, f"{name}: row {bad[0]} got {got[name][bad[0]]} want {want[name][bad[0]]}"


def test_valid_traffic_encodes_like_encode_requests(traffic: list[pb.ScoreRequest]) -> None:
    """Simulated requests are all accepted and their records equal encode_requests field by field."""
    validator = RequestValidator(CONFIG, max_skew_days=SKEW_DAYS)
    now = _now(traffic)
    assert not _expected(validator, traffic, now, True)
    violations, records = validator.check_and_encode(traffic, now)
    assert violations == [] and records is not None
    _assert_same_records(records, encode_requests(traffic, CONFIG))
    violations, records = _wire(validator, traffic, now)
    assert violations == [] and records is not None
    _assert_same_records(records, encode_requests(traffic, CONFIG))
    # Again with every identifier's key memoised: still the same records.
    for size in (1, 16, 100):
        violations, records = validator.check_and_encode(traffic[:size], now, indexed=False)
        assert records is not None
        _assert_same_records(records, encode_requests(traffic[:size], CONFIG))


def _mutations(now: int) -> list[tuple[str, Mutation]]:
    """Each field made invalid in turn (or put right on a boundary), as (name, change in place)."""

    def txn(field: str, value: object) -> Mutation:
        return lambda r: setattr(r.transaction, field, value)

    def cust(field: str, value: object) -> Mutation:
        return lambda r: setattr(r.customer, field, value)

    def event(micros: Callable[[pb.ScoreRequest], int], nanos: int | None = None) -> Mutation:
        return lambda r: _set_time(r.transaction.event_time, micros(r), nanos)

    def cust_time(field: str, micros: Callable[[pb.ScoreRequest], int], nanos: int | None = None) -> Mutation:
        return lambda r: _set_time(getattr(r.customer, field), micros(r), nanos)

    out: list[tuple[str, Mutation]] = [
        ("locale fr", lambda r: setattr(r, "locale", "fr")),
        ("locale EN", lambda r: setattr(r, "locale", "EN")),
        ("no transaction", lambda r: r.ClearField("transaction")),
        ("no event_time", lambda r: r.transaction.ClearField("event_time")),
        ("event_time epoch", event(lambda r: 0)),
        ("event_time nanos < 0", event(_event_us, -1)),
        ("event_time nanos 1e9", event(_event_us, 1_000_000_000)),
        ("event_time future", event(lambda r: now + SKEW_DAYS * DAY_US + US)),
        ("event_time on the skew limit", event(lambda r: now - SKEW_DAYS * DAY_US)),
        ("event_time past", event(lambda r: now - SKEW_DAYS * DAY_US - 1)),
        ("amount 0", txn("amount_minor", 0)),
        ("amount < 0", txn("amount_minor", -5)),
        ("amount max", txn("amount_minor", 10**15)),
        ("amount > max", txn("amount_minor", 10**15 + 1)),
        ("currency empty", txn("currency", "")),
        ("currency unknown", txn("currency", "XXX")),
        ("currency lowercase", txn("currency", "cny")),
        ("type 0", txn("type", 0)),
        ("type 99", txn("type", 99)),
        ("channel 0", txn("channel", 0)),
        ("channel 99", txn("channel", 99)),
        ("mcc 5 digits", txn("merchant_category", "12345")),
        ("mcc letters", txn("merchant_category", "12a")),
        ("mcc arabic digit", txn("merchant_category", "\u0663")),
        ("mcc sign", txn("merchant_category", "+1")),
        ("mcc space", txn("merchant_category", " 1")),
        ("mcc newline", txn("merchant_category", "1\n")),
        ("mcc 0000", txn("merchant_category", "0000")),
        ("no customer", lambda r: r.ClearField("customer")),
        ("empty customer", lambda r: r.customer.Clear()),
        ("customer_id long", cust("customer_id", "c" * 129)),
        ("customer_id 128", cust("customer_id", "c" * 128)),
        ("customer_id tab", cust("customer_id", "c\tx")),
        ("age -1", cust("age", -1)),
        ("age 151", cust("age", 151)),
        ("age 150", cust("age", 150)),
        ("birth nanos", cust_time("birth_date", lambda r: _event_us(r) - 9000 * DAY_US, -3)),
        ("birth 1849", cust_time("birth_date", lambda r: -3_786_825_600 * US - 1)),
        ("birth 1850", cust_time("birth_date", lambda r: -3_786_825_600 * US)),
        ("birth after event", cust_time("birth_date", lambda r: _event_us(r) + 1)),
        ("birth at event", cust_time("birth_date", lambda r: _event_us(r))),
        ("birth leap day", cust_time("birth_date", lambda r: 951_782_400 * US)),  # 2000-02-29
        ("birth epoch", cust_time("birth_date", lambda r: 0)),
        ("opened nanos", cust_time("account_opened", lambda r: _event_us(r) - DAY_US, 1_000_000_000)),
        ("opened 1849", cust_time("account_opened", lambda r: -3_786_825_600 * US - 1)),
        ("opened a day after event", cust_time("account_opened", lambda r: _event_us(r) + DAY_US)),
        ("opened later", cust_time("account_opened", lambda r: _event_us(r) + DAY_US + 1)),
        ("opened epoch", cust_time("account_opened", lambda r: 0)),
        ("balance > max", cust("balance_minor", 10**15 + 1)),
        ("balance < -max", cust("balance_minor", -(10**15) - 1)),
        ("balance -max", cust("balance_minor", -(10**15))),
        ("balance 0 stated", lambda r: (cust("balance_minor", 0)(r), cust("balance_currency", "CNY")(r))),
        ("balance_currency unknown", cust("balance_currency", "ZZZ")),
        ("risk_level 7", cust("risk_level", 7)),
        ("risk_level -1", cust("risk_level", -1)),
    ]
    texts = ("transaction_id", "account_id", "counterparty_id", "device_id", "region", "counterparty_bank", "branch_id")
    for field in texts:
        out += [
            (f"{field} empty", txn(field, "")),
            (f"{field} 128", txn(field, "x" * 128)),
            (f"{field} 129", txn(field, "x" * 129)),
            (f"{field} newline", txn(field, "a\nb")),
            (f"{field} unicode", txn(field, "账户-éß")),
            (f"{field} long unprintable", txn(field, "\x00" * 200)),
        ]
    for field in ("country", "counterparty_country"):
        out += [
            (f"{field} lowercase", txn(field, "cn")),
            (f"{field} one letter", txn(field, "C")),
            (f"{field} three letters", txn(field, "CHN")),
            (f"{field} digit", txn(field, "C1")),
            (f"{field} accented", txn(field, "ÉS")),
            (f"{field} newline", txn(field, "CN\n")),
            (f"{field} home", txn(field, "CN")),
            (f"{field} abroad", txn(field, "JP")),
        ]
    return out


def _mutated_requests(traffic: list[pb.ScoreRequest], now: int) -> Iterator[tuple[str, pb.ScoreRequest]]:
    """(mutation name, request) for every mutation applied to a copy of each of four varied simulated requests."""
    for name, mutate in _mutations(now):
        for base in (traffic[0], traffic[7], traffic[13], traffic[100]):
            req = pb.ScoreRequest()
            req.CopyFrom(base)
            mutate(req)
            yield name, req


def _decoder() -> WireDecoder:
    return WireDecoder(CONFIG, max_skew_us=SKEW_DAYS * DAY_US, locales=tuple(_LOCALES), types=_TYPES,
                       channels=_CHANNELS, risk_levels=_RISK_LEVELS)


def test_each_field_invalid_in_turn_gives_the_same_violations(traffic: list[pb.ScoreRequest]) -> None:
    """Every single-field mutation of several requests: same violations (or same record) as the reference."""
    now = _now(traffic)
    validator = RequestValidator(CONFIG, max_skew_days=SKEW_DAYS)
    invalid = 0
    for name, req in _mutated_requests(traffic, now):
        want = validator.score_request(req, now)
        violations, records = validator.check_and_encode([req], now, indexed=False)
        assert violations == want, name
        _, rejected = validator._scan([req], now)
        assert rejected == ([0] if want else []), f"{name}: the one-pass check and score_request disagree"
        row_violations, row = validator.check_and_encode_row(req, now)
        assert row_violations == want, name
        wire_violations, wire_records = _wire(validator, [req], now)
        assert wire_violations == validator.score_request(req, now, prefix="requests[0]."), name
        if want:
            invalid += 1
            assert records is None and row is None
        else:
            assert records is not None and row is not None, name
            _assert_same_records(records, encode_requests([req], CONFIG))
            _assert_same_records(np.array([row], dtype=TXN_DTYPE), records)
            assert wire_records is not None, name
            _assert_same_records(wire_records, records)
    assert invalid >= 250  # the mutations do reject requests (guards against a harness that changes nothing)


def test_batches_with_random_bad_fields_report_every_row_in_order(traffic: list[pb.ScoreRequest]) -> None:
    """Batches mixing valid rows and rows with several bad fields: the whole list of violations, row-prefixed."""
    now = _now(traffic)
    validator = RequestValidator(CONFIG, max_skew_days=SKEW_DAYS)
    mutations = _mutations(now)
    rng = random.Random(9)
    rejected_batches = 0
    for _ in range(150):
        batch = []
        for _ in range(rng.choice([1, 2, 16, 40])):
            req = pb.ScoreRequest()
            req.CopyFrom(rng.choice(traffic))
            if rng.random() < 0.3:
                for _, mutate in rng.sample(mutations, rng.randint(1, 4)):
                    mutate(req)
            batch.append(req)
        want = _expected(validator, batch, now, True)
        violations, records = validator.check_and_encode(batch, now)
        assert violations == want
        wire_violations, wire_records = _wire(validator, batch, now)
        assert wire_violations == want
        if want:
            assert wire_records is None
            rejected_batches += 1
            assert records is None
            assert all(v.field.startswith("requests[") for v in violations)
        else:
            assert records is not None and wire_records is not None
            _assert_same_records(records, encode_requests(batch, CONFIG))
            _assert_same_records(wire_records, records)
    assert rejected_batches > 20


def test_empty_batch_gives_an_empty_record_array() -> None:
    """No requests: no violations and zero records of the transaction dtype."""
    violations, records = RequestValidator(CONFIG, max_skew_days=1).check_and_encode([], 0)
    assert violations == [] and records is not None and len(records) == 0
    assert records.dtype == encode_requests([], CONFIG).dtype


def test_the_compiled_decoder_decides_simulated_traffic_itself(traffic: list[pb.ScoreRequest]) -> None:
    """Every simulated request is accepted by the compiled decoder itself (none left to the Python path)."""
    now = _now(traffic)
    wire = pb.ScoreBatchRequest(requests=traffic).SerializeToString()
    decoded = _decoder().decode(wire, len(traffic), now)
    assert decoded is not None
    records, status = decoded.records, decoded.status
    assert np.count_nonzero(status) == 0
    _assert_same_records(records, encode_requests(traffic, CONFIG))


def test_the_compiled_decoder_accepts_exactly_what_python_accepts(traffic: list[pb.ScoreRequest]) -> None:
    """Each mutation: the decoder accepts a request itself only when it is valid, with the reference record, and
    leaves a valid one to Python only when its text is not ASCII."""
    now = _now(traffic)
    decoder = _decoder()
    validator = RequestValidator(CONFIG, max_skew_days=SKEW_DAYS)
    native = 0
    for name, req in _mutated_requests(traffic, now):
        valid = not validator.score_request(req, now)
        decoded = decoder.decode(pb.ScoreBatchRequest(requests=[req]).SerializeToString(), 1, now)
        assert decoded is not None
        records, status = decoded.records, decoded.status
        if status[0] == OK:
            assert valid, f"{name}: accepted by the decoder, rejected by score_request"
            _assert_same_records(records, encode_requests([req], CONFIG))
            native += 1
        else:
            assert status[0] == PYTHON
            assert not valid or name.endswith(" unicode"), f"{name}: valid ASCII request left to Python"
    assert native >= 100  # boundary values and valid variants (guards against a harness that decides nothing)
