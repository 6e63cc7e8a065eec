"""No secret, token or full account id in anything the server writes or answers, even when things go wrong."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from outpost.v1 import outpost_pb2 as pb
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from tests.hardening.conftest import RedisServer, ServeProcess, Tokens, bearer, free_port
from tests.server.conftest import BASE_TIME, ts, txn

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REDIS_PASSWORD = "redis-pw-" + secrets.token_hex(8)
ACCOUNTS = [f"6222021987654{n:03d}7731" for n in range(6)]  # card-number-like ids, distinctive digits


def _texts(err: grpc.RpcError) -> list[str]:
    """Every text of an error a client sees: the message and each BadRequest field description."""
    texts = [err.details() or ""]
    status = rpc_status.from_call(err)
    if status is not None:
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                texts += [v.field + " " + v.description for v in bad.field_violations]
    return texts


@dataclass(frozen=True)
class Exposure:
    """Everything a server wrote (log output, audit log) and every text its error replies carried."""

    written: str
    replies: list[str]


@pytest.fixture(scope="module")
def exposure(tmp_path_factory: pytest.TempPathFactory, tokens: Tokens) -> Iterator[Exposure]:
    """Traffic, bad input, auth failures, broken reloads and a Redis outage against `outpost serve` (debug logs)."""
    tmp_path = tmp_path_factory.mktemp("leaks")
    (tmp_path / "redis").mkdir()
    redis_server = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD)
    redis_server.start()
    try:
        yield _provoke(tmp_path, tokens, redis_server)
    finally:
        redis_server.stop()


def _provoke(tmp_path: Path, tokens: Tokens, redis_server: RedisServer) -> Exposure:
    port = free_port()
    server = ServeProcess(tmp_path, port, OUTPOST_LOG_LEVEL="debug", OUTPOST_AUTH_TOKENS_PATH=str(tokens.path),
                          OUTPOST_STATE_BACKEND="redis", OUTPOST_REDIS_URL=redis_server.url)
    try:
        return _traffic(server, tokens, redis_server)
    finally:
        server.close()


def _traffic(server: ServeProcess, tokens: Tokens, redis_server: RedisServer) -> Exposure:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    server.wait_serving(channel)
    scoring, admin = pb_grpc.RiskScoringStub(channel), pb_grpc.RiskAdminStub(channel)
    scorer, boss = bearer(tokens.scorer), bearer(tokens.admin)
    seen: list[str] = []

    def expect_error(call: object) -> None:
        try:
            call()  # type: ignore[operator]
        except grpc.RpcError as err:
            seen.extend(_texts(err))
        else:
            raise AssertionError("the call was expected to fail")

    for k, account in enumerate(ACCOUNTS):
        request = txn(account, counterparty=ACCOUNTS[-1 - k], at=BASE_TIME + dt.timedelta(minutes=k),
                      customer=pb.Customer(customer_id=account, age=40))
        reply = scoring.Score(request, metadata=scorer, timeout=30)
        seen += [r.message for r in reply.reasons] + [reply.guidance]
        scoring.ReportOutcome(pb.ReportOutcomeRequest(
            transaction_id=request.transaction.transaction_id, outcome=pb.OUTCOME_CONFIRMED_FRAUD,
            reported_at=ts(BASE_TIME), account_id=account, analyst="analyst-" + account, note=account),
            metadata=scorer, timeout=30)
        expect_error(lambda a=account: scoring.Score(txn(a, currency="X" + a), metadata=scorer))
        expect_error(lambda a=account: scoring.Score(txn(a, amount_minor=-1, device_id="\x00" + a), metadata=scorer))
        expect_error(lambda a=account: scoring.Score(txn(a + "9" * 200), metadata=scorer))
        expect_error(lambda a=account: scoring.Score(txn(a), metadata=bearer(tokens.scorer + a)))
    expect_error(lambda: scoring.ReportOutcome(pb.ReportOutcomeRequest(
        transaction_id="unknown-" + ACCOUNTS[0], outcome=pb.OUTCOME_CONFIRMED_FRAUD, reported_at=ts(BASE_TIME)),
        metadata=scorer))
    expect_error(lambda: admin.ListRules(pb.ListRulesRequest(), metadata=scorer))
    expect_error(lambda: admin.ListRules(pb.ListRulesRequest(), metadata=bearer(tokens.admin[:-1])))
    raw = channel.unary_unary("/outpost.v1.RiskScoring/Score", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
    expect_error(lambda: raw(b"\x0a\x05" + ACCOUNTS[0].encode()[:5] + b"\xff\xfe", metadata=scorer))
    broken = admin.ReloadRules(pb.ReloadRulesRequest(rules_yaml="rules: [{id: X, when: 'amount_cny >'}]"),
                               metadata=boss)
    assert not broken.ok
    missing = admin.ReloadModel(pb.ReloadModelRequest(model_version="no-such-version"), metadata=boss)
    assert not missing.ok
    redis_server.kill()  # the dependency fails: its error is logged, and the Redis password must not be
    degraded = scoring.Score(txn(ACCOUNTS[0], at=BASE_TIME + dt.timedelta(hours=1)), metadata=scorer, timeout=30)
    assert degraded.degraded
    channel.close()
    assert server.terminate() == 0

    written = server.output()
    written += (server.log_path.parent / "data" / "audit.log").read_text(encoding="utf-8")
    assert "state_backend" in written and "unauthenticated" in written  # the log really holds those events
    return Exposure(written=written, replies=seen)


def test_no_token_in_logs_or_errors(exposure: Exposure, tokens: Tokens) -> None:
    """Neither bearer token (nor a near miss of one) appears in the server's output or in any error reply."""
    for secret in (tokens.scorer, tokens.admin):
        assert secret not in exposure.written, "a token is in the server's output"
        assert not any(secret in text for text in exposure.replies), "a token is in an error message"


def test_no_full_account_id_in_logs_or_errors(exposure: Exposure) -> None:
    """No full account id appears in the server's output or in any error reply."""
    for account in ACCOUNTS:
        assert account not in exposure.written, f"full account id {account} is in the server's output"
        assert not any(account in text for text in exposure.replies), f"full account id {account} is in an error"


def test_no_exception_text_in_error_replies(exposure: Exposure) -> None:
    """Error replies never carry a traceback or an exception's text."""
    for text in exposure.replies:
        assert "Traceback" not in text and "Exception" not in text and "Error(" not in text, text


def test_no_redis_password_in_logs_or_errors(exposure: Exposure) -> None:
    """The Redis password in OUTPOST_REDIS_URL appears nowhere, even while Redis is down."""
    assert REDIS_PASSWORD not in exposure.written, "the Redis password is in the server's output"
    assert not any(REDIS_PASSWORD in text for text in exposure.replies)
