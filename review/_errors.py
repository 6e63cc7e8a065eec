"""Errors of the review package, one root for all of them.

    ReviewError
    ├── DecisionLogError          the decision log cannot be written or read (directory, Redis, format)
    ├── AlertError
    │   ├── AlertNotFoundError    no alert with that id or transaction id
    │   └── AlertStateError       the alert's state does not allow the change (e.g. assigning a closed alert)
    ├── BacktestError             the data, rule file, model or time range of a backtest is unusable
    ├── ReportError               the inputs of a report are unusable (missing columns, unknown account)
    └── OutcomeDeliveryError      the Outpost server did not accept an outcome report (carries the gRPC status)

Every message says what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AlertError",
    "AlertNotFoundError",
    "AlertStateError",
    "BacktestError",
    "DecisionLogError",
    "OutcomeDeliveryError",
    "ReportError",
    "ReviewError",
]


class ReviewError(Exception):
    """Root of every error raised by the review package."""


class DecisionLogError(ReviewError):
    """The decision log cannot be written or read."""


class AlertError(ReviewError):
    """An alert operation failed."""


class AlertNotFoundError(AlertError):
    """No alert matches the id given."""

    def __init__(self, message: str, *, alert_id: int | None = None, transaction_id: str | None = None) -> None:
        super().__init__(message)
        self.alert_id = alert_id
        self.transaction_id = transaction_id


class AlertStateError(AlertError):
    """The alert's current state does not allow the requested change."""

    def __init__(self, message: str, *, alert_id: int, state: str, requested: str) -> None:
        super().__init__(message)
        self.alert_id = alert_id
        self.state = state
        self.requested = requested


class BacktestError(ReviewError):
    """A backtest cannot run on the inputs given."""


class ReportError(ReviewError):
    """A report cannot be built from the inputs given."""


class OutcomeDeliveryError(ReviewError):
    """The server did not accept an outcome report."""

    def __init__(self, message: str, *, code: str = "", details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details
