"""Waiting for a gRPC server to report SERVING on the standard health service."""

from __future__ import annotations

import subprocess
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loadtest._errors import TargetError

__all__ = ["is_serving", "wait_serving"]


def is_serving(target: str, *, timeout_s: float = 0.5) -> bool:
    """True when ``target`` answers grpc.health.v1 Health/Check (overall service '') with SERVING."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_serving(
    target: str,
    *,
    timeout_s: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
    poll_s: float = 0.02,
) -> float:
    """Poll ``target`` until it is SERVING; the seconds waited. Fails early if ``process`` exits first."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise TargetError(
                f"the server process (pid {process.pid}) exited with code {process.returncode} before it was "
                f"SERVING on {target}; run it by hand to see why"
            )
        if is_serving(target, timeout_s=min(0.5, max(0.05, deadline - time.monotonic()))):
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise TargetError(
                f"{target} did not report SERVING within {timeout_s:.0f} s; check that the server is running and "
                "that grpc.health.v1 is enabled"
            )
        time.sleep(poll_s)
