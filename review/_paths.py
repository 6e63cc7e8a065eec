"""Where the review loop keeps its files under the server's data directory, and the sinks a server opens."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from review._alerts import AlertConfig, AlertSink
from review._decision_log import DecisionLog, DecisionLogConfig, RedisDecisionLog
from server import Settings

__all__ = ["ReviewSinks", "alerts_db_path", "decision_log_dir", "open_sinks"]


def decision_log_dir(settings: Settings) -> Path:
    """``<data_dir>/decisions``: the local decision log."""
    return settings.data_dir / "decisions"


def alerts_db_path(settings: Settings) -> Path:
    """``<data_dir>/alerts.sqlite3``: the alert queue."""
    return settings.data_dir / "alerts.sqlite3"


@dataclass
class ReviewSinks:
    """The review loop's sinks of one server: add ``sinks`` to the pipeline, ``record_outcome`` to the outcome
    sinks, and ``close()`` at shutdown (after the last score)."""

    decision_log: DecisionLog | RedisDecisionLog | None
    alerts: AlertSink
    sinks: list[Any] = field(default_factory=list)

    def record_outcome(self, request: Any) -> None:
        """For ``OutpostService.outcome_sinks``: an accepted ReportOutcomeRequest closes its alert."""
        self.alerts.record_outcome(request)

    def flush(self, timeout: float | None = 30.0) -> bool:
        done = self.alerts.flush(timeout)
        if self.decision_log is not None:
            done = self.decision_log.flush(timeout) and done
        return done

    def close(self) -> None:
        self.alerts.close()
        if self.decision_log is not None:
            self.decision_log.close()


def open_sinks(
    settings: Settings,
    *,
    log_config: DecisionLogConfig | None = None,
    alert_config: AlertConfig | None = None,
) -> ReviewSinks:
    """The sinks for ``settings``: the decision log when ``settings.decision_log`` (a Redis Stream when the state
    is in Redis, so that every replica writes to one place; local files otherwise) and the alert queue."""
    log: DecisionLog | RedisDecisionLog | None = None
    if settings.decision_log:
        if settings.state_backend == "redis" and settings.redis_url:
            log = RedisDecisionLog(settings.redis_url, config=log_config)
        else:
            log = DecisionLog(decision_log_dir(settings), log_config)
    alerts = AlertSink(alerts_db_path(settings), alert_config)
    sinks: list[Any] = [alerts] if log is None else [log, alerts]
    return ReviewSinks(decision_log=log, alerts=alerts, sinks=sinks)
