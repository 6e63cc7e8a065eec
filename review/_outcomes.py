"""Sending an outcome to a running Outpost server: ``RiskScoring/ReportOutcome`` over real gRPC."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from outpost.v1 import outpost_pb2 as pb
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from review._alerts import OUTCOMES, outcome_name
from review._errors import OutcomeDeliveryError

__all__ = ["OutcomeReport", "send_outcome"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeReport:
    """What an analyst found out about a transaction, and when (business time)."""

    transaction_id: str
    outcome: str
    reported_at: dt.datetime
    account_id: str = ""
    counterparty_id: str = ""
    analyst: str = ""
    note: str = ""

    def to_proto(self) -> pb.ReportOutcomeRequest:
        stamp = Timestamp()
        stamp.FromDatetime(self.reported_at.astimezone(dt.UTC).replace(tzinfo=None))
        return pb.ReportOutcomeRequest(
            transaction_id=self.transaction_id, outcome=OUTCOMES[outcome_name(self.outcome)],  # type: ignore[arg-type]
            reported_at=stamp, account_id=self.account_id, counterparty_id=self.counterparty_id,
            analyst=self.analyst, note=self.note,
        )


def send_outcome(
    target: str,
    report: OutcomeReport,
    *,
    timeout: float = 10.0,
    root_certificates: Path | None = None,
    token: str = "",
) -> pb.ReportOutcomeResponse:
    """Report ``report`` to the server at ``target`` (HOST:PORT); TLS when ``root_certificates`` is given.

    Raises OutcomeDeliveryError with the gRPC status when the server does not accept it.
    """
    if root_certificates is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=root_certificates.read_bytes())
        channel = grpc.secure_channel(target, creds)
    else:
        channel = grpc.insecure_channel(target)
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    try:
        response: pb.ReportOutcomeResponse = pb_grpc.RiskScoringStub(channel).ReportOutcome(
            report.to_proto(), timeout=timeout, metadata=metadata
        )
    except grpc.RpcError as exc:
        code = exc.code().name if exc.code() is not None else "UNKNOWN"
        details = exc.details() or ""
        hint = {
            "UNAVAILABLE": "is the server running at that address, and serving?",
            "INVALID_ARGUMENT": "the server rejected the fields; see the details",
            "UNAUTHENTICATED": "pass a token the server accepts (--token)",
            "PERMISSION_DENIED": "the token lacks the right to report outcomes",
            "DEADLINE_EXCEEDED": "the server did not answer in time; retry",
        }.get(code, "see the details")
        raise OutcomeDeliveryError(
            f"server {target} did not accept the outcome of {report.transaction_id}: {code} {details}; {hint}",
            code=code, details=details,
        ) from None
    finally:
        channel.close()
    if not response.accepted:
        raise OutcomeDeliveryError(f"server {target} answered accepted=false for {report.transaction_id}")
    return response
