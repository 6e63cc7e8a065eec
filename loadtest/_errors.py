"""Errors of the load-testing harness.

    LoadTestError
    ├── ConfigError      an option is invalid; the message names the option and a valid value
    ├── DataError        the transaction file cannot be read or a row cannot become a ScoreRequest
    └── TargetError      the target (or the baseline server) did not start, or never reported SERVING
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "LoadTestError", "TargetError"]


class LoadTestError(Exception):
    """Root of every error raised by ``loadtest``."""


class ConfigError(LoadTestError):
    """An option is invalid. The message names the option and says what a valid value looks like."""


class DataError(LoadTestError):
    """Transaction data is unusable: a missing column, an unknown enum name, an unreadable file."""


class TargetError(LoadTestError):
    """The server under test cannot be reached, did not start, or is not SERVING."""
