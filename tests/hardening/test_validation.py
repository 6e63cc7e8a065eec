"""Hostile and arbitrary input over a real channel: INVALID_ARGUMENT with BadRequest, no crash, no state change.

Every request this module sends goes through ``Ledger.send``, which replays the ones the server accepted into a
local FeatureEngine in the same order. After each example the accounts it touched are probed on both sides
(dry run + explain): the server's state must equal the replay of the accepted requests, and every request
built to be invalid must have been refused.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from outpost.v1 import outpost_pb2 as pb

from features import DEFAULT_RATES, FEATURE_NAMES, FeatureEngine
from server._requests import encode_requests
from server._service import feature_config
from tests.hardening.conftest import health_status
from tests.server.conftest import BASE_TIME, RunningServer, make_settings, start_server

TYPES = [v for v in pb.TransactionType.values() if v]
CHANNELS = [v for v in pb.Channel.values() if v]
CURRENCIES = sorted(DEFAULT_RATES)
PROBE_TIME = BASE_TIME + dt.timedelta(days=30)
REQUIRED = ("transaction_id", "event_time", "account_id", "amount_minor", "currency", "type", "channel")
HYPOTHESIS = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_ids = itertools.count()
_namespaces = itertools.count()


def _ts(when: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _bad_request(err: grpc.RpcError) -> dict[str, str]:
    """The BadRequest field violations of an INVALID_ARGUMENT error (fails the test when they are missing)."""
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{err.code()}: {err.details()}"
    status = rpc_status.from_call(err)
    assert status is not None, "INVALID_ARGUMENT must carry a google.rpc.Status"
    out: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    assert out, "INVALID_ARGUMENT must name at least one field violation"
    for text in [err.details() or "", *out.values()]:
        assert "Traceback" not in text and "Error" not in text and "Exception" not in text, text
    return out


@dataclass
class Ledger:
    """The server under test and the local replay of every request it accepted, in the order it accepted them."""

    server: RunningServer
    engine: FeatureEngine = field(init=False)

    def __post_init__(self) -> None:
        self.config = feature_config(self.server.app.settings)
        self.engine = FeatureEngine.open(self.config)

    def _replay(self, requests: list[pb.ScoreRequest], replies: list[pb.ScoreResponse]) -> None:
        for request, reply in zip(requests, replies, strict=True):
            record = encode_requests([request], self.config)
            _, handles = self.engine.score(record)
            self.engine.commit(record, handles, np.array([reply.action == pb.ACTION_BLOCK]))

    def score(self, request: pb.ScoreRequest) -> grpc.RpcError | None:
        """Send one Score; replay it when accepted; the error when refused (anything but INVALID_ARGUMENT fails)."""
        try:
            reply = self.server.scoring.Score(request, timeout=60)
        except grpc.RpcError as err:
            _bad_request(err)
            return err
        self._replay([request], [reply])
        return None

    def batch(self, requests: list[pb.ScoreRequest]) -> grpc.RpcError | None:
        try:
            reply = self.server.scoring.ScoreBatch(pb.ScoreBatchRequest(requests=requests), timeout=60)
        except grpc.RpcError as err:
            _bad_request(err)
            return err
        self._replay(requests, list(reply.responses))
        return None

    def raw(self, payload: bytes) -> grpc.RpcError | None:
        """Send bytes as a Score body; if they happen to be a valid request and are accepted, replay it."""
        call = self.server.channel.unary_unary("/outpost.v1.RiskScoring/Score", request_serializer=lambda b: b,
                                               response_deserializer=pb.ScoreResponse.FromString)
        try:
            reply = call(payload, timeout=60)
        except grpc.RpcError as err:
            _bad_request(err)
            return err
        self._replay([pb.ScoreRequest.FromString(payload)], [reply])
        return None

    def assert_same_state(self, accounts: set[str]) -> None:
        """The server's features for each account (dry-run probe) equal those of the local replay."""
        for account in sorted(accounts):
            probe = pb.ScoreRequest(
                transaction=pb.Transaction(
                    transaction_id=f"probe-{next(_ids)}", event_time=_ts(PROBE_TIME), account_id=account,
                    counterparty_id="probe-payee", amount_minor=10_000, currency="CNY",
                    type=pb.TRANSACTION_TYPE_TRANSFER_OUT, channel=pb.CHANNEL_MOBILE),
                explain=True, dry_run=True)
            served = self.server.scoring.Score(probe, timeout=60).features
            got = np.array([served[name] for name in FEATURE_NAMES])
            expected, _ = self.engine.score(encode_requests([probe], self.config))
            assert np.allclose(got, expected[0], rtol=1e-9, atol=1e-6, equal_nan=True), (
                f"{account}: server state differs from the replay of accepted requests")


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    server = start_server(make_settings(tmp_path_factory.mktemp("validation"), durability="none"))
    yield Ledger(server)
    assert health_status(server.channel) == health_pb2.HealthCheckResponse.SERVING
    server.stop()


# -- strategies --------------------------------------------------------------------------------------------------------
def _new_id() -> str:
    return f"pbt-{next(_ids)}"


@st.composite
def customers(draw: st.DrawFn, event_time: dt.datetime) -> pb.Customer:
    customer = pb.Customer(customer_id=draw(st.sampled_from(["", "cust-1", "cust-2"])),
                           risk_level=cast("pb.RiskLevel", draw(st.sampled_from(list(pb.RiskLevel.values())))),
                           is_employee=draw(st.booleans()))
    if draw(st.booleans()):
        customer.birth_date.CopyFrom(_ts(event_time - dt.timedelta(days=draw(st.integers(1, 100 * 365)))))
    else:
        customer.age = draw(st.integers(0, 150))
    if draw(st.booleans()):
        customer.account_opened.CopyFrom(_ts(event_time - dt.timedelta(days=draw(st.integers(0, 40 * 365)))))
    customer.balance_minor = draw(st.integers(-10**12, 10**12))
    customer.balance_currency = draw(st.sampled_from(["", *CURRENCIES[:4]]))
    return customer


@st.composite
def valid_requests(draw: st.DrawFn, accounts: list[str]) -> pb.ScoreRequest:
    """A request every rule of validation accepts."""
    event_time = BASE_TIME + dt.timedelta(minutes=draw(st.integers(0, 60 * 24 * 25)))
    transaction = pb.Transaction(
        transaction_id=_new_id(), event_time=_ts(event_time), account_id=draw(st.sampled_from(accounts)),
        counterparty_id=draw(st.sampled_from(["", "payee-1", "payee-2", "merchant-7"])),
        amount_minor=draw(st.integers(1, 10**10)), currency=draw(st.sampled_from(CURRENCIES)),
        type=draw(st.sampled_from(TYPES)), channel=draw(st.sampled_from(CHANNELS)),  # type: ignore[arg-type]
        device_id=draw(st.sampled_from(["", "dev-1", "dev-2"])), country=draw(st.sampled_from(["", "CN", "HK"])),
        region=draw(st.sampled_from(["", "440300"])), merchant_category=draw(st.sampled_from(["", "5814", "6011"])),
        counterparty_bank=draw(st.sampled_from(["", "ICBKCNBJ"])),
        counterparty_country=draw(st.sampled_from(["", "CN", "US"])),
        branch_id=draw(st.sampled_from(["", "SZ-01", "SZ-02"])),
    )
    request = pb.ScoreRequest(transaction=transaction, locale=draw(st.sampled_from(["", "zh-CN", "en"])),
                              explain=draw(st.booleans()), dry_run=draw(st.booleans()))
    if draw(st.booleans()):
        request.customer.CopyFrom(draw(customers(event_time)))
    return request


Mutation = Callable[[pb.ScoreRequest], str]  # makes the request invalid; returns the field path it broke


def _huge(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["x", "账", "\U0001f4b0"])) * draw(st.integers(129, 300_000))


def _control(draw: st.DrawFn) -> str:
    return draw(st.characters(categories=["Cc", "Cf", "Zl", "Zp"], exclude_characters="\ud800"))


MUTATION_KINDS = 18


@st.composite
def mutations(draw: st.DrawFn, kind: int | None = None) -> Mutation:
    """One way to break a valid request (``kind``, or any), each known to be invalid, with the field it names."""
    kind = draw(st.integers(0, MUTATION_KINDS - 1)) if kind is None else kind
    ident = draw(st.sampled_from(["transaction_id", "account_id", "counterparty_id", "device_id", "region",
                                  "counterparty_bank", "branch_id"]))
    huge, control = _huge(draw), _control(draw)
    enum_field = draw(st.sampled_from(["type", "channel"]))
    bad_enum = draw(st.integers(9, 2**31 - 1) | st.integers(-(2**31), 0))
    missing = draw(st.sampled_from(REQUIRED))
    bad_amount = draw(st.integers(-(2**63), 0) | st.integers(10**15 + 1, 2**63 - 1))
    bad_currency = draw(st.text(max_size=12).filter(lambda c: c and c not in DEFAULT_RATES))
    far = draw(st.integers(-(2**62), -(11 * 365 * 86_400)) | st.integers(11 * 365 * 86_400, 2**62))
    bad_nanos = draw(st.integers(-(2**31), -1) | st.integers(10**9, 2**31 - 1))
    bad_locale = draw(st.text(max_size=20).filter(lambda s: s not in {"", "zh-CN", "zh", "zh-Hans", "en", "en-US",
                                                                       "en-GB"}))
    country_field = draw(st.sampled_from(["country", "counterparty_country"]))
    bad_country = draw(st.sampled_from(["cn", "CHN", "C", "CN\n", "\nCN", "C1", "ＣＮ"]))
    bad_mcc = draw(st.sampled_from(["58140", "ab", "5814\n", "-1", "５８１４", " 581"]))
    bad_age = draw(st.integers(-(2**31), -1) | st.integers(151, 2**31 - 1))
    ancient = draw(st.integers(-(2**62), -3_786_825_601))  # before 1850
    bad_balance = draw(st.integers(-(2**63), -(10**15) - 1) | st.integers(10**15 + 1, 2**63 - 1))

    def apply(request: pb.ScoreRequest) -> str:
        t, c = request.transaction, request.customer
        if kind == 0:
            setattr(t, ident, huge)
            return f"transaction.{ident}"
        if kind == 1:
            setattr(t, ident, getattr(t, ident) + control)
            return f"transaction.{ident}"
        if kind == 2:
            setattr(t, enum_field, bad_enum)
            return f"transaction.{enum_field}"
        if kind == 3:
            t.ClearField(missing)
            return f"transaction.{missing}"
        if kind == 4:
            request.ClearField("transaction")
            return "transaction"
        if kind == 5:
            t.amount_minor = bad_amount
            return "transaction.amount_minor"
        if kind == 6:
            t.currency = bad_currency
            return "transaction.currency"
        if kind == 7:
            t.event_time.seconds += far
            return "transaction.event_time"
        if kind == 8:
            t.event_time.nanos = bad_nanos
            return "transaction.event_time"
        if kind == 9:
            request.locale = bad_locale
            return "locale"
        if kind == 10:
            setattr(t, country_field, bad_country)
            return f"transaction.{country_field}"
        if kind == 11:
            t.merchant_category = bad_mcc
            return "transaction.merchant_category"
        if kind == 12:
            c.ClearField("birth_date")
            c.age = bad_age
            return "customer.age"
        if kind == 13:
            c.birth_date.seconds = ancient
            return "customer.birth_date"
        if kind == 14:
            c.account_opened.seconds = ancient if bad_nanos % 2 else t.event_time.seconds + abs(far)
            return "customer.account_opened"
        if kind == 15:
            c.balance_minor = bad_balance
            return "customer.balance_minor"
        if kind == 16:
            c.customer_id = huge
            return "customer.customer_id"
        c.risk_level = 4 + abs(bad_enum) % 1000  # type: ignore[assignment]
        return "customer.risk_level"

    return apply


@st.composite
def arbitrary_requests(draw: st.DrawFn, accounts: list[str]) -> pb.ScoreRequest:
    """A request with every field drawn from its whole wire type: valid or not, the server must cope."""
    text = st.text(max_size=24)
    int32, int64 = st.integers(-(2**31), 2**31 - 1), st.integers(-(2**63), 2**63 - 1)
    seconds = st.integers(-62_135_596_800, 253_402_300_799) | st.just(int(BASE_TIME.timestamp()))
    transaction = pb.Transaction(
        transaction_id=draw(text), account_id=draw(st.sampled_from(accounts) | text),
        counterparty_id=draw(text), amount_minor=draw(int64 | st.integers(1, 10**7)),
        currency=draw(st.sampled_from(CURRENCIES) | text),
        type=cast("pb.TransactionType", draw(int32 | st.sampled_from(TYPES))),
        channel=cast("pb.Channel", draw(int32 | st.sampled_from(CHANNELS))), device_id=draw(text), country=draw(text),
        region=draw(text), merchant_category=draw(text), counterparty_bank=draw(text),
        counterparty_country=draw(text), branch_id=draw(text),
    )
    if draw(st.booleans()):
        transaction.event_time.seconds = draw(seconds)
        transaction.event_time.nanos = draw(int32 | st.just(0))
    request = pb.ScoreRequest(transaction=transaction, locale=draw(st.sampled_from(["", "en"]) | text),
                              dry_run=draw(st.booleans()), explain=draw(st.booleans()))
    if draw(st.booleans()):
        customer = request.customer
        customer.customer_id, customer.age = draw(text), draw(int32)
        customer.balance_minor, customer.balance_currency = draw(int64), draw(text)
        customer.risk_level = cast("pb.RiskLevel", draw(int32))  # any int32: the server must cope
        for stamp in (customer.birth_date, customer.account_opened):
            if draw(st.booleans()):
                stamp.seconds, stamp.nanos = draw(seconds | int64), draw(int32)
    return request


# -- tests -----------------------------------------------------------------------------------------------------------
def _accounts() -> list[str]:
    n = next(_namespaces)
    return [f"acct-pbt-{n}-a", f"acct-pbt-{n}-b"]


@HYPOTHESIS
@given(data=st.data())
def test_hostile_requests_are_refused_and_change_nothing(ledger: Ledger, data: st.DataObject) -> None:
    """Valid requests mixed with broken ones: each broken one is INVALID_ARGUMENT naming its field; state = replay."""
    accounts = _accounts()
    for _ in range(data.draw(st.integers(1, 6))):
        request = data.draw(valid_requests(accounts))
        choice = data.draw(st.sampled_from(["valid", "hostile", "batch", "hostile_batch"]))
        if choice == "valid":
            assert ledger.score(request) is None, "a valid request was refused"
        elif choice == "hostile":
            broken = data.draw(mutations())(request)
            err = ledger.score(request)
            assert err is not None, f"a request with a broken {broken} was accepted"
            assert broken in _bad_request(err)
        else:
            batch = [request, *(data.draw(valid_requests(accounts)) for _ in range(data.draw(st.integers(0, 4))))]
            if choice == "batch":
                assert ledger.batch(batch) is None, "a batch of valid requests was refused"
            else:
                row = data.draw(st.integers(0, len(batch) - 1))
                broken = data.draw(mutations())(batch[row])
                err = ledger.batch(batch)
                assert err is not None, f"a batch with a broken requests[{row}].{broken} was accepted"
                assert f"requests[{row}].{broken}" in _bad_request(err)
    ledger.assert_same_state(set(accounts))


@pytest.mark.parametrize("kind", range(MUTATION_KINDS))
@settings(HYPOTHESIS, max_examples=8)
@given(data=st.data())
def test_each_kind_of_broken_request_is_refused(ledger: Ledger, kind: int, data: st.DataObject) -> None:
    """Each way of breaking a request (huge, control chars, enums, missing, ranges, codes, times) is refused."""
    accounts = _accounts()
    request = data.draw(valid_requests(accounts))
    broken = data.draw(mutations(kind))(request)
    err = ledger.score(request)
    assert err is not None, f"a request with a broken {broken} was accepted"
    assert broken in _bad_request(err)
    ledger.assert_same_state(set(accounts))


@HYPOTHESIS
@given(data=st.data())
def test_arbitrary_requests_are_answered_or_refused_cleanly(ledger: Ledger, data: st.DataObject) -> None:
    """Requests with arbitrary field values get OK or INVALID_ARGUMENT (never another code); state = replay."""
    accounts = _accounts()
    touched = set(accounts)
    for _ in range(data.draw(st.integers(1, 6))):
        request = data.draw(arbitrary_requests(accounts))
        if ledger.score(request) is None:
            touched.add(request.transaction.account_id)
    ledger.assert_same_state(touched)


@HYPOTHESIS
@given(payload=st.binary(max_size=4096), accounts=st.builds(_accounts), data=st.data())
def test_random_bytes_on_the_wire_are_invalid_argument(ledger: Ledger, payload: bytes, accounts: list[str],
                                                       data: st.DataObject) -> None:
    """Random bytes, and valid bodies cut short or followed by junk, are INVALID_ARGUMENT, never UNKNOWN."""
    touched = set(accounts)
    body = data.draw(valid_requests(accounts)).SerializeToString()
    cut = data.draw(st.integers(0, len(body)))
    for raw in (payload, body[:cut] + payload, body + b"\xff" + payload):
        if ledger.raw(raw) is None:
            touched.add(pb.ScoreRequest.FromString(raw).transaction.account_id)
    ledger.assert_same_state(touched)


def test_every_field_missing_in_turn(ledger: Ledger) -> None:
    """Clearing each field of a valid request in turn: required fields are named in BadRequest, others are fine."""
    accounts = _accounts()
    fields = [f.name for f in pb.Transaction.DESCRIPTOR.fields]
    for name in fields:
        request = pb.ScoreRequest(
            transaction=pb.Transaction(
                transaction_id=_new_id(), event_time=_ts(BASE_TIME), account_id=accounts[0],
                counterparty_id="payee-9", amount_minor=50_000, currency="CNY", type=pb.TRANSACTION_TYPE_TRANSFER_OUT,
                channel=pb.CHANNEL_MOBILE, device_id="dev-9", country="CN", region="440300",
                merchant_category="5814", counterparty_bank="ICBKCNBJ", counterparty_country="CN", branch_id="SZ-9"),
            customer=pb.Customer(customer_id="c-9", age=40, balance_minor=1_000_000, balance_currency="CNY"))
        if name != "transaction_id":
            request.transaction.ClearField(name)
        else:
            request.transaction.transaction_id = ""
        err = ledger.score(request)
        if name in REQUIRED:
            assert err is not None and f"transaction.{name}" in _bad_request(err), name
        else:
            assert err is None, f"{name} is optional, yet its absence was refused"
    for name in [f.name for f in pb.Customer.DESCRIPTOR.fields]:
        request = pb.ScoreRequest(
            transaction=pb.Transaction(
                transaction_id=_new_id(), event_time=_ts(BASE_TIME), account_id=accounts[1], amount_minor=70_000,
                currency="CNY", type=pb.TRANSACTION_TYPE_CASH_WITHDRAWAL, channel=pb.CHANNEL_TELLER),
            customer=pb.Customer(customer_id="c-8", birth_date=_ts(BASE_TIME - dt.timedelta(days=70 * 365)), age=70,
                                 account_opened=_ts(BASE_TIME - dt.timedelta(days=999)), balance_minor=9_000_000,
                                 balance_currency="CNY", risk_level=pb.RISK_LEVEL_MEDIUM, is_employee=True))
        request.customer.ClearField(name)
        assert ledger.score(request) is None, f"customer.{name} is optional, yet its absence was refused"
    ledger.assert_same_state(set(accounts))
