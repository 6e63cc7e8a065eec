"""The RiskScoring servicer: Score, ScoreBatch and ReportOutcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
import numpy as np
import structlog
from outpost.v1 import outpost_pb2 as pb
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from features import stable_key
from server._batcher import DeadlineExpiredError, InvalidRequestError
from server._requests import FieldViolation, now_us, review_extra
from server._responses import BatchReply
from server._service import OutpostService
from server._status import abort_exhausted, abort_invalid

__all__ = ["RiskScoringServicer", "WireCall", "add_scoring_service"]

log = structlog.get_logger("outpost.scoring")

_FRAUD_OUTCOMES = frozenset({pb.OUTCOME_CONFIRMED_FRAUD, pb.OUTCOME_CUSTOMER_DISSUADED})
_CLEAN_OUTCOMES = frozenset({pb.OUTCOME_FALSE_POSITIVE, pb.OUTCOME_LEGITIMATE})


M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class WireCall(Generic[M]):
    """A request message and the wire bytes it was parsed from, which the compiled decoder reads (ScoreBatch's
    alone; Score calls' together, in the batcher)."""

    message: M
    data: bytes


def _keeping_bytes(parse: Callable[[bytes], M]) -> Callable[[bytes], WireCall[M]]:
    return lambda data: WireCall(parse(data), data)


def add_scoring_service(servicer: RiskScoringServicer, server: grpc.aio.Server) -> None:
    """Register the RiskScoring methods, as the generated ``add_RiskScoringServicer_to_server`` does, except that
    Score and ScoreBatch keep their requests' bytes and ScoreBatch returns its reply's bytes."""
    handlers = {
        "Score": grpc.unary_unary_rpc_method_handler(
            servicer.Score,
            request_deserializer=_keeping_bytes(pb.ScoreRequest.FromString),
            response_serializer=pb.ScoreResponse.SerializeToString,
        ),
        # No response serializer: ScoreBatch returns its reply's wire bytes (server._reply_wire), sent as they are.
        "ScoreBatch": grpc.unary_unary_rpc_method_handler(
            servicer.ScoreBatch, request_deserializer=_keeping_bytes(pb.ScoreBatchRequest.FromString)
        ),
        "ReportOutcome": grpc.unary_unary_rpc_method_handler(
            servicer.ReportOutcome,
            request_deserializer=pb.ReportOutcomeRequest.FromString,
            response_serializer=pb.ReportOutcomeResponse.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["RiskScoring"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


class RiskScoringServicer(pb_grpc.RiskScoringServicer):  # type: ignore[misc]
    """Scores transactions; every call is validated in full before anything changes."""

    def __init__(self, service: OutpostService) -> None:
        self._service = service
        self._validator = service.validator

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        service = self._service
        if not service.ready.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "Outpost is starting: rules and model are loading")
        if service.commit is not None and service.commit.stalled:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the state log's disk has not finished a sync for over {service.settings.sync_stall_seconds:g} s, "
                "so this instance cannot make a score durable; retry on another instance",
            )
        if service.in_flight >= service.settings.max_in_flight:
            await abort_exhausted(context, "too many calls in flight; retry with backoff")

    def _model_budget(self, context: grpc.aio.ServicerContext) -> tuple[bool, str]:
        remaining = context.time_remaining()
        if remaining is None or remaining * 1000.0 >= self._service.settings.model_min_budget_ms:
            return True, ""
        return False, "deadline"

    async def Score(self, call: WireCall[pb.ScoreRequest], context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        await self._admit(context)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline already passed; not scored")
        use_model, degraded = self._model_budget(context)
        service = self._service
        assert service.batcher is not None
        service.in_flight += 1
        try:
            # The batcher validates the request (with the batch it joins) before anything is scored or changed.
            return await service.batcher.score(
                call.message, call.data, use_model=use_model, degraded_reason=degraded, time_remaining=remaining
            )
        except InvalidRequestError as exc:
            await abort_invalid(context, exc.violations)
            raise
        except DeadlineExpiredError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed while queued; not scored")
            raise
        finally:
            service.in_flight -= 1

    async def ScoreBatch(self, call: WireCall[pb.ScoreBatchRequest], context: grpc.aio.ServicerContext) -> bytes:
        await self._admit(context)
        service = self._service
        limit = service.settings.score_batch_max
        requests = call.message.requests
        if not requests:
            await abort_invalid(context, [FieldViolation("requests", "must hold at least one ScoreRequest")])
        if len(requests) > limit:
            await abort_invalid(
                context,
                [
                    FieldViolation(
                        "requests", f"at most {limit} transactions per call, got {len(requests)}; split the batch"
                    )
                ],
            )
        # The compiled decoder reads the requests from the call's own bytes.
        violations, batch = self._validator.check_and_encode_wire(requests, call.data, now_us())
        if violations:
            await abort_invalid(context, violations)
        assert batch is not None
        use_model, degraded = self._model_budget(context)
        assert service.pipeline is not None and service.commit is not None
        started = time.perf_counter_ns()
        service.in_flight += 1
        try:
            ids = batch.transaction_ids
            decisions = service.pipeline.run(
                batch.records, use_model=np.full(len(ids), use_model), txn_ids=ids, extra=review_extra(requests),
                record=False,
            )
            # The sinks run while this call waits for its sync (or, after an inline one, once the reply is sent).
            asyncio.get_running_loop().call_soon(service.pipeline.record, ids, batch.records, decisions)
            seq = service.commit.mark()
            reply = BatchReply(
                decisions, requests, policy=service.policy, degraded_reason=degraded, transaction_ids=ids,
                explain=batch.explain,
            )
            await service.commit.wait(seq)
        finally:
            service.in_flight -= 1
        return reply.encode((time.perf_counter_ns() - started) // 1000)

    async def ReportOutcome(
        self, request: pb.ReportOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportOutcomeResponse:
        await self._admit(context)
        violations = self._validator.outcome_request(request, now_us())
        service = self._service
        counterparty_key = (
            stable_key(request.counterparty_id)
            if request.counterparty_id
            else service.recent.get(request.transaction_id)
        )
        if counterparty_key is None and not violations:
            violations.append(
                FieldViolation(
                    "counterparty_id", "required: this server does not know the transaction, so name its counterparty"
                )
            )
        if violations:
            await abort_invalid(context, violations)
        assert service.engine is not None and service.commit is not None and counterparty_key is not None
        reported_us = request.reported_at.seconds * 1_000_000 + request.reported_at.nanos // 1000
        if counterparty_key and (request.outcome in _FRAUD_OUTCOMES or request.outcome in _CLEAN_OUTCOMES):
            service.engine.record_outcome(counterparty_key, reported_us, request.outcome in _FRAUD_OUTCOMES)
            await service.commit.wait(service.commit.mark())
        for sink in service.outcome_sinks:
            sink(request)
        log.info("outcome", outcome=pb.Outcome.Name(request.outcome))
        return pb.ReportOutcomeResponse(transaction_id=request.transaction_id, accepted=True)
