"""gRPC status codes are chosen here and nowhere else: rich INVALID_ARGUMENT details, and safe internal errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server._requests import FieldViolation

__all__ = ["abort_exhausted", "abort_internal", "abort_invalid", "invalid_argument_status"]


def invalid_argument_status(violations: Sequence[FieldViolation], message: str = "") -> grpc.Status:
    """An INVALID_ARGUMENT status carrying a google.rpc.BadRequest that names every bad field."""
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in violations
            ]
        )
    )
    fields = ", ".join(v.field for v in violations[:10])
    text = message or f"invalid request: {fields}" + (" ..." if len(violations) > 10 else "")
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=text, details=[detail]))


async def abort_invalid(context: grpc.aio.ServicerContext, violations: Sequence[FieldViolation]) -> NoReturn:
    await context.abort_with_status(invalid_argument_status(violations))
    raise AssertionError("unreachable")  # abort_with_status raises


async def abort_exhausted(context: grpc.aio.ServicerContext, message: str) -> NoReturn:
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
    raise AssertionError("unreachable")


async def abort_internal(context: grpc.aio.ServicerContext, incident: str) -> NoReturn:
    """INTERNAL with an incident id only: exception texts never leave the server."""
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error, incident {incident}; see the server log")
    raise AssertionError("unreachable")
