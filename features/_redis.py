"""Redis state backend (work in progress): raises until the server-side script lands."""

from __future__ import annotations

import numpy as np

from features._config import FeatureConfig
from features._errors import BackendError

__all__ = ["RedisState"]


class RedisState:
    """Placeholder for the Redis backend."""

    def __init__(self, config: FeatureConfig, redis_url: str) -> None:
        raise BackendError("the Redis backend is not available yet; use backend='embedded'")

    @property
    def has_pending(self) -> bool:
        """Never pending."""
        return False

    def score(self, txns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Not implemented."""
        raise BackendError("not available")

    def commit(self, txns: np.ndarray, handles: np.ndarray, blocked: np.ndarray) -> None:
        """Not implemented."""
        raise BackendError("not available")

    def record_outcome(self, counterparty_key: int, reported_at_us: int, is_fraud: bool) -> None:
        """Not implemented."""
        raise BackendError("not available")

    def stats(self) -> dict[str, int]:
        """Not implemented."""
        return {}
