"""The error hierarchy of the feature package: every error it raises on purpose derives from ``FeatureError``.

::

    FeatureError                      root: catch this to handle any feature-engine failure
    ├── FeatureConfigError            a FeatureConfig value is invalid (fix the configuration)
    ├── EncodingError                 a tabular row cannot be encoded (carries row and column)
    ├── EngineStateError              the engine was used out of order (commit without score, closed engine)
    ├── RecoveryError                 the data directory cannot be recovered (corrupt snapshot, other config)
    └── BackendError                  the state backend failed (Redis unreachable, script error)

Redis errors are translated into ``BackendError`` in exactly one place (``features._redis``).
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "EncodingError",
    "EngineStateError",
    "FeatureConfigError",
    "FeatureError",
    "RecoveryError",
]


class FeatureError(Exception):
    """Root of every error raised on purpose by the ``features`` package."""


class FeatureConfigError(FeatureError, ValueError):
    """A ``FeatureConfig`` field is invalid; the message names the field and what it accepts."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"FeatureConfig.{field}: {message}")
        self.field = field


class EncodingError(FeatureError, ValueError):
    """A tabular row cannot be encoded into a transaction record."""

    def __init__(self, row: int, column: str, message: str) -> None:
        super().__init__(f"row {row}, column {column!r}: {message}")
        self.row = row
        self.column = column


class EngineStateError(FeatureError, RuntimeError):
    """The engine was called out of order (for example commit() without a matching score(), or after close())."""


class RecoveryError(FeatureError):
    """The data directory cannot be recovered; the message says which file and what to do."""


class BackendError(FeatureError):
    """The state backend (Redis) failed; the message says what to check."""
