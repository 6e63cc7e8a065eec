"""Bearer tokens with roles, security events in logs and metrics, and the audit log of admin changes."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from outpost.v1 import outpost_pb2 as pb
from structlog.testing import capture_logs

from models import default_model_dir
from server._settings import PACKAGE_ROOT
from tests.hardening.conftest import Tokens, bearer, health_status, rpc_code, sample, scrape
from tests.server.conftest import RunningServer, make_settings, start_server, txn


@pytest.fixture(scope="module")
def auth_server(tokens: Tokens, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(make_settings(tmp_path_factory.mktemp("auth"), auth_tokens_path=tokens.path,
                                        metrics_addr="127.0.0.1:0"))
    yield server
    server.stop()


def _metrics(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert server.app.metrics_port is not None
    return scrape(server.app.metrics_port)


def test_no_token_is_unauthenticated(auth_server: RunningServer) -> None:
    """Score without a token, with an unknown token or with another scheme is UNAUTHENTICATED."""
    scoring = auth_server.scoring
    assert rpc_code(lambda: scoring.Score(txn("acct-auth-1"))) == grpc.StatusCode.UNAUTHENTICATED
    assert rpc_code(lambda: scoring.Score(txn("acct-auth-1"), metadata=bearer("not-a-token"))) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert rpc_code(lambda: scoring.Score(txn("acct-auth-1"), metadata=(("authorization", "Basic Zm9vOmJhcg=="),))) \
        == grpc.StatusCode.UNAUTHENTICATED


def test_roles_decide_which_service_a_token_may_call(auth_server: RunningServer, tokens: Tokens) -> None:
    """A scorer scores but gets PERMISSION_DENIED on RiskAdmin; an admin may call RiskAdmin."""
    assert rpc_code(lambda: auth_server.scoring.Score(txn("acct-auth-2"), metadata=bearer(tokens.scorer))) == \
        grpc.StatusCode.OK
    assert rpc_code(lambda: auth_server.admin.ListRules(pb.ListRulesRequest(), metadata=bearer(tokens.scorer))) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert rpc_code(lambda: auth_server.admin.GetStatus(pb.GetStatusRequest(), metadata=bearer(tokens.scorer))) == \
        grpc.StatusCode.PERMISSION_DENIED
    reply = auth_server.admin.ListRules(pb.ListRulesRequest(), metadata=bearer(tokens.admin))
    assert reply.rules


def test_health_and_reflection_need_no_token(auth_server: RunningServer) -> None:
    """Load balancers and grpcurl reach health and reflection without a token."""
    assert health_status(auth_server.channel) == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(auth_server.channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    assert any(r.list_services_response.service for r in replies)


def test_failures_are_security_events_without_the_token(auth_server: RunningServer, tokens: Tokens) -> None:
    """Both failures are logged on outpost.security without the token and counted in outpost_security_events."""
    before = _metrics(auth_server)
    wrong = "tok-wrong-" + "f00d" * 8
    with capture_logs() as entries:
        rpc_code(lambda: auth_server.scoring.Score(txn("acct-auth-3"), metadata=bearer(wrong)))
        rpc_code(lambda: auth_server.admin.ListRules(pb.ListRulesRequest(), metadata=bearer(tokens.scorer)))
    after = _metrics(auth_server)
    events = {e["event"]: e for e in entries if e.get("log_level") == "warning"}
    assert {"unauthenticated", "permission_denied"} <= set(events), entries
    assert events["permission_denied"]["principal"] == "gateway-sz"
    assert events["unauthenticated"]["method"] == "/outpost.v1.RiskScoring/Score"
    text = json.dumps(entries, default=str)
    for secret in (wrong, tokens.scorer, tokens.admin):
        assert secret not in text
    for kind in ("unauthenticated", "permission_denied"):
        name = "outpost_security_events_total"
        assert sample(after, name, kind=kind) - sample(before, name, kind=kind) == 1


def _audit(server: RunningServer) -> list[dict[str, object]]:
    path = server.app.settings.data_dir / "audit.log"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_rule_reload_is_audited_with_who_when_and_versions(auth_server: RunningServer, tokens: Tokens) -> None:
    """ReloadRules writes an audit line naming the token's principal, the time, the new and previous version."""
    admin = bearer(tokens.admin)
    before = auth_server.admin.ListRules(pb.ListRulesRequest(), metadata=admin).ruleset_version
    text = (PACKAGE_ROOT / "rules_engine" / "packs" / "default.yaml").read_text(encoding="utf-8")
    changed, count = re.subn(r'(?m)^version: "([^"]*)"', r'version: "\1-audit"', text, count=1)
    assert count == 1
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    reply = auth_server.admin.ReloadRules(pb.ReloadRulesRequest(rules_yaml=changed, source_name="audit.yaml"),
                                          metadata=admin)
    assert reply.ok and reply.previous_version == before
    entry = _audit(auth_server)[-1]
    assert entry["actor"] == "ops-alice"
    assert entry["action"] == "reload_rules"
    assert entry["version"] == reply.ruleset_version != before
    assert entry["previous_version"] == before
    when = dt.datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00"))
    assert started <= when <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


def test_model_switch_is_audited_with_who_when_and_versions(auth_server: RunningServer, tokens: Tokens) -> None:
    """ReloadModel to another version and back writes two audit lines with principal and both versions."""
    admin = bearer(tokens.admin)
    original = auth_server.admin.GetStatus(pb.GetStatusRequest(), metadata=admin).model_version
    copy = _registry(auth_server) / "gbm-audit-copy"
    shutil.copytree(default_model_dir(), copy)
    meta = json.loads((copy / "metadata.json").read_text(encoding="utf-8"))
    meta["version"] = "gbm-audit-copy"
    (copy / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    switched = auth_server.admin.ReloadModel(pb.ReloadModelRequest(model_version="gbm-audit-copy"), metadata=admin)
    assert switched.ok and switched.model_version == "gbm-audit-copy" and switched.previous_version == original
    assert auth_server.scoring.Score(txn("acct-audit-1"), metadata=admin).model_version == "gbm-audit-copy"
    back = auth_server.admin.ReloadModel(pb.ReloadModelRequest(), metadata=admin)
    assert back.ok and back.model_version == original
    first, second = _audit(auth_server)[-2:]
    assert (first["actor"], first["action"], first["version"], first["previous_version"]) == \
        ("ops-alice", "reload_model", "gbm-audit-copy", original)
    assert (second["actor"], second["version"], second["previous_version"]) == \
        ("ops-alice", original, "gbm-audit-copy")
    assert first["at"] and second["at"]


def _registry(server: RunningServer) -> Path:
    registry = server.app.settings.model_registry
    assert registry is not None
    registry.mkdir(parents=True, exist_ok=True)
    return registry
