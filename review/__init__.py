"""The review loop: the decision log, the alert queue, outcomes, backtests and HTML reports with charts.

Online, ``DecisionLog`` (or ``RedisDecisionLog``) and ``AlertSink`` are decision sinks of the server's
pipeline; offline, ``run_backtest`` replays a labelled transaction file through the same feature engine,
rules, model and policy, and ``backtest_report`` / ``investigation_report`` draw what analysts look at.
See docs/review.md.

Backtests and reports import pandas, pyarrow's compute and CSV modules and matplotlib; their names load on first use,
so that a serving process, which only writes decisions and alerts, starts without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features import lazy_names
from review._alerts import (
    ALERT_STATES,
    OUTCOMES,
    Alert,
    AlertConfig,
    AlertEvent,
    AlertReason,
    AlertSink,
    AlertStore,
    outcome_name,
)
from review._decision_log import (
    DECISION_SCHEMA,
    DecisionLog,
    DecisionLogConfig,
    RedisDecisionLog,
    account_key,
    read_decision_stream,
    read_decisions,
)
from review._errors import (
    AlertError,
    AlertNotFoundError,
    AlertStateError,
    BacktestError,
    DecisionLogError,
    OutcomeDeliveryError,
    ReportError,
    ReviewError,
)
from review._outcomes import OutcomeReport, send_outcome
from review._paths import ReviewSinks, alerts_db_path, decision_log_dir, open_sinks
from review._worker import WriterStats

if TYPE_CHECKING:
    from review._backtest import BacktestConfig, BacktestResult, RuleSetRun, run_backtest
    from review._reports import backtest_report, investigation_report, read_scores

__getattr__ = lazy_names(globals(), {
    "review._backtest": ("BacktestConfig", "BacktestResult", "RuleSetRun", "run_backtest"),
    "review._reports": ("backtest_report", "investigation_report", "read_scores"),
})

__all__ = [
    "ALERT_STATES",
    "DECISION_SCHEMA",
    "OUTCOMES",
    "Alert",
    "AlertConfig",
    "AlertError",
    "AlertEvent",
    "AlertNotFoundError",
    "AlertReason",
    "AlertSink",
    "AlertStateError",
    "AlertStore",
    "BacktestConfig",
    "BacktestError",
    "BacktestResult",
    "DecisionLog",
    "DecisionLogConfig",
    "DecisionLogError",
    "OutcomeDeliveryError",
    "OutcomeReport",
    "RedisDecisionLog",
    "ReportError",
    "ReviewError",
    "ReviewSinks",
    "RuleSetRun",
    "WriterStats",
    "account_key",
    "alerts_db_path",
    "backtest_report",
    "decision_log_dir",
    "investigation_report",
    "open_sinks",
    "outcome_name",
    "read_decision_stream",
    "read_decisions",
    "read_scores",
    "run_backtest",
    "send_outcome",
]
