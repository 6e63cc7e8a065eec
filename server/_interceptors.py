"""One server interceptor for what every call shares: authentication and roles, malformed bodies, metrics, the
drain at shutdown, and the translation of unexpected exceptions into a safe INTERNAL status (no exception text
leaves the server)."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog

from server._auth import OPEN_SERVICES, TokenTable, current_principal
from server._metrics import Metrics
from server._requests import FieldViolation
from server._status import invalid_argument_status

__all__ = ["GatewayInterceptor"]

log = structlog.get_logger("outpost.gateway")
security_log = structlog.get_logger("outpost.security")

# A drain ends once no call is in flight and none has arrived for this long (or when the grace period ends).
_DRAIN_QUIET_SECONDS = 0.25


class _Malformed:
    """Stands in for a request whose bytes are not a valid protobuf message."""


_MALFORMED = _Malformed()


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return _MALFORMED

    return parse


class GatewayInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps every unary-unary handler of the Outpost services (health and reflection stay open)."""

    def __init__(self, *, tokens: TokenTable | None, metrics: Metrics | None) -> None:
        self._tokens = tokens
        self._metrics = metrics
        self._draining = False
        self._last_arrival = 0.0
        self.in_flight = 0  # Outpost calls inside the interceptor right now
        # Request ids need to be unique, not secret: a random per-process prefix and a counter (uuid4 per call
        # costs a getrandom system call).
        self._id_prefix = secrets.token_hex(5)
        self._id_counter = itertools.count(1)
        self._handlers: dict[str, grpc.RpcMethodHandler | None] = {}

    def _next_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):06x}"

    async def drain(self, grace: float) -> None:
        """Refuse new calls with UNAVAILABLE (retryable: nothing was done) and wait for the calls in flight.

        Returns once no call is in flight and none has arrived for a quarter of a second, or after ``grace``
        seconds. Calls refused here reach another instance through the client's retry; calls still queued in
        gRPC when the server finally stops would be CANCELLED instead, which clients do not retry.
        """
        self._draining = True
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.in_flight == 0 and time.monotonic() - self._last_arrival >= _DRAIN_QUIET_SECONDS:
                return
            await asyncio.sleep(0.01)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        if method in self._handlers:  # one wrapped handler per method, built at its first call
            return self._handlers[method]
        handler = await continuation(details)
        service = method.lstrip("/").split("/", 1)[0]
        if handler is None or service in OPEN_SERVICES or handler.unary_unary is None:
            self._handlers[method] = handler
            return handler
        behavior = handler.unary_unary
        tokens, metrics = self._tokens, self._metrics
        short = method.rsplit("/", 1)[-1]

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            metadata = dict(context.invocation_metadata() or ())
            # Every log line of this call carries its request id: the caller's x-request-id, or a fresh one.
            # The call runs in its own task, so the binding never leaks into another call.
            request_id = str(metadata.get("x-request-id", ""))[:64] or self._next_request_id()
            structlog.contextvars.bind_contextvars(request_id=request_id, method=short)
            self.in_flight += 1
            self._last_arrival = time.monotonic()
            try:
                if self._draining:
                    code = "UNAVAILABLE"
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "Outpost is shutting down; retry elsewhere")
                if tokens is not None:
                    principal = tokens.authenticate(str(metadata.get("authorization", "")))
                    if principal is None:
                        code = "UNAUTHENTICATED"
                        security_log.warning("unauthenticated", method=method, peer=context.peer())
                        if metrics:
                            metrics.security.labels("unauthenticated").inc()
                        await context.abort(
                            grpc.StatusCode.UNAUTHENTICATED,
                            "missing or unknown bearer token in 'authorization' metadata",
                        )
                    assert principal is not None  # abort() raised otherwise
                    if not tokens.allowed(principal, service):
                        code = "PERMISSION_DENIED"
                        security_log.warning(
                            "permission_denied", method=method, principal=principal.name, role=principal.role
                        )
                        if metrics:
                            metrics.security.labels("permission_denied").inc()
                        await context.abort(
                            grpc.StatusCode.PERMISSION_DENIED, f"role {principal.role!r} may not call {service}"
                        )
                    current_principal.set(principal.name)
                if request is _MALFORMED:
                    code = "INVALID_ARGUMENT"
                    await context.abort_with_status(
                        invalid_argument_status(
                            [FieldViolation("(body)", "not a valid protobuf message of the expected type")]
                        )
                    )
                response = await behavior(request, context)
                return response
            except grpc.aio.AbortError:
                raw = context.code()
                if raw is not None:
                    code = raw.name
                if metrics and code == "INVALID_ARGUMENT":
                    metrics.rejected.labels(short).inc()
                if metrics and code == "RESOURCE_EXHAUSTED":
                    metrics.shed.labels(short).inc()
                raise
            except asyncio.CancelledError:  # the client went away or its deadline passed
                code = "CANCELLED"
                raise
            except Exception:
                code = "INTERNAL"
                incident = uuid.uuid4().hex[:12]
                log.exception("unhandled", method=method, incident=incident)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error, incident {incident}; see server log")
            finally:
                self.in_flight -= 1
                if metrics:
                    metrics.observe_call(short, code, time.perf_counter() - started)

        self._handlers[method] = grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
        return self._handlers[method]
