"""Health, reflection and admin RPCs of a real server."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from outpost.v1 import outpost_pb2 as pb

from tests.server.conftest import RunningServer


def test_health_is_serving_once_loaded(outpost_server: RunningServer) -> None:
    """The standard health service answers SERVING for the server and for RiskScoring."""
    stub = health_pb2_grpc.HealthStub(outpost_server.channel)
    for name in ("", "outpost.v1.RiskScoring"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_outpost_services(outpost_server: RunningServer) -> None:
    """Server reflection lists the Outpost services, so grpcurl-style tools work."""
    stub = reflection_pb2_grpc.ServerReflectionStub(outpost_server.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"outpost.v1.RiskScoring", "outpost.v1.RiskAdmin", "grpc.health.v1.Health"} <= names


def test_list_rules_reports_the_pack(outpost_server: RunningServer) -> None:
    """ListRules returns the shipped pack (56+ rules) with its version."""
    reply = outpost_server.admin.ListRules(pb.ListRulesRequest(locale="en"))
    assert len(reply.rules) >= 56
    assert reply.ruleset_version
    assert all(r.id and r.typology and r.description for r in reply.rules)


def test_reload_with_a_broken_file_keeps_the_old_rules(outpost_server: RunningServer) -> None:
    """A rule file that fails to compile is rejected with its errors; the old set keeps serving."""
    before = outpost_server.admin.ListRules(pb.ListRulesRequest()).ruleset_version
    reply = outpost_server.admin.ReloadRules(pb.ReloadRulesRequest(
        rules_yaml='version: "x"\nrules:\n  - id: broken\n    when: "amount_cny >"\n', source_name="broken.yaml"))
    assert not reply.ok
    assert reply.errors
    assert outpost_server.admin.ListRules(pb.ListRulesRequest()).ruleset_version == before


def test_unknown_method_bytes_do_not_crash(outpost_server: RunningServer) -> None:
    """Garbage bytes to Score are rejected with a status, and the server keeps serving."""
    call = outpost_server.channel.unary_unary(
        "/outpost.v1.RiskScoring/Score", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        call(b"\xff\xff\xff\xff\x0f")
    except grpc.RpcError as err:
        assert err.code() in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
    stub = health_pb2_grpc.HealthStub(outpost_server.channel)
    assert stub.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
