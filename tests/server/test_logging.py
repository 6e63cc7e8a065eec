"""Log lines of a call carry its request id, and never the account id in clear."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from outpost.v1 import outpost_pb2 as pb
from structlog.testing import LogCapture

from tests.server.conftest import BASE_TIME, RunningServer, ts, txn


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    """Route structlog through contextvars into a capture, then restore the configuration."""
    capture = LogCapture()
    old = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture], cache_logger_on_first_use=False)
    yield capture
    structlog.configure(**old)


def test_request_id_from_metadata_is_on_every_line(outpost_server: RunningServer, captured: LogCapture) -> None:
    """A caller's x-request-id appears on the log lines of its call; the raw account id does not."""
    scored = txn("acct-log-6222020000001234", counterparty="shop-log")
    outpost_server.scoring.Score(scored)
    outpost_server.scoring.ReportOutcome(
        pb.ReportOutcomeRequest(transaction_id=scored.transaction.transaction_id, outcome=pb.OUTCOME_FALSE_POSITIVE,
                                reported_at=ts(BASE_TIME)),
        metadata=[("x-request-id", "req-abc-123")],
    )
    lines = [e for e in captured.entries if e.get("event") == "outcome"]
    assert lines, captured.entries
    assert all(e.get("request_id") == "req-abc-123" for e in lines)
    assert not any("6222020000001234" in str(e) for e in captured.entries)
