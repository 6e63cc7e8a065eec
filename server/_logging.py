"""structlog configured once, for production speed: JSON lines, cached filtering loggers, contextvars."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging", "redact"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info") -> None:
    """The only global state of Outpost: the logging configuration.

    Lines from the standard library's ``logging`` (asyncio's "Task exception was never retrieved", the state log's
    failed snapshots, gRPC's own) come out as the same JSON lines, with the logger's name, rather than as plain text.
    """
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    render = structlog.processors.JSONRenderer(ensure_ascii=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,
            render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            stamp,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            render,
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])


def redact(identifier: str) -> str:
    """An account or customer id as it may appear in logs: its last 4 characters only."""
    if len(identifier) <= 4:
        return "*" * len(identifier)
    return "*" * min(len(identifier) - 4, 8) + identifier[-4:]
