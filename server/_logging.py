"""structlog configured once, for production speed: JSON lines, cached filtering loggers, contextvars."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging", "redact"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info") -> None:
    """The only global state of Outpost: the logging configuration."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def redact(identifier: str) -> str:
    """An account or customer id as it may appear in logs: its last 4 characters only."""
    if len(identifier) <= 4:
        return "*" * len(identifier)
    return "*" * min(len(identifier) - 4, 8) + identifier[-4:]
