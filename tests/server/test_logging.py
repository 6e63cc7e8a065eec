"""Log lines of a call carry its request id, and never the account id in clear; every line is JSON."""

from __future__ import annotations

import json
import subprocess
import sys
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


_STDLIB_LINE = """
import logging
from server._logging import configure_logging
configure_logging("info")
logging.getLogger("features._durability").error("snapshot of %d log records failed", 5)
logging.getLogger("some.library").debug("below the level")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("asyncio").exception("Task exception was never retrieved")
"""


def test_standard_library_log_lines_are_json_lines_too() -> None:
    """Lines from `logging` (asyncio, the state log, libraries) come out as JSON with level and logger name."""
    done = subprocess.run([sys.executable, "-c", _STDLIB_LINE], capture_output=True, text=True, timeout=120,
                          check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["level"], e["logger"], e["event"]) for e in lines] == [
        ("error", "features._durability", "snapshot of 5 log records failed"),
        ("error", "asyncio", "Task exception was never retrieved"),
    ]
    assert "ZeroDivisionError" in lines[1]["exception"] and all("timestamp" in e for e in lines)
