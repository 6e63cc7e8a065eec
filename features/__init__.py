"""Feature catalogue, transaction records and per-account state for Outpost.

``FeatureEngine`` computes the catalogue features of each transaction from the account's state just before
it, online (``score``/``commit``/``sync``) and offline (``replay``) through the same kernels.

Names used only offline (``encode_frame``, ``TABULAR_COLUMNS``) import pandas; they load on first use, so that a
serving process, which never needs them, starts without pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features._catalogue import CATALOGUE, ENUMS, FEATURE_INDEX, FEATURE_NAMES, FeatureKind, FeatureSpec, feature_index
from features._config import DEFAULT_RATES, FeatureConfig
from features._engine import OUTCOME_DTYPE, FeatureEngine, StateBackend
from features._errors import (
    BackendError,
    EncodingError,
    EngineStateError,
    FeatureConfigError,
    FeatureError,
    RecoveryError,
)
from features._keys import stable_key_bytes
from features._lazy import lazy_names
from features._schema import NO_BALANCE, NO_TIME, TXN_DTYPE, new_batch, stable_key

if TYPE_CHECKING:
    from features._encode import TABULAR_COLUMNS, encode_frame

__getattr__ = lazy_names(globals(), {"features._encode": ("TABULAR_COLUMNS", "encode_frame")})

__all__ = [
    "CATALOGUE",
    "DEFAULT_RATES",
    "ENUMS",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "NO_BALANCE",
    "NO_TIME",
    "OUTCOME_DTYPE",
    "TABULAR_COLUMNS",
    "TXN_DTYPE",
    "BackendError",
    "EncodingError",
    "EngineStateError",
    "FeatureConfig",
    "FeatureConfigError",
    "FeatureEngine",
    "FeatureError",
    "FeatureKind",
    "FeatureSpec",
    "RecoveryError",
    "StateBackend",
    "encode_frame",
    "feature_index",
    "lazy_names",
    "new_batch",
    "stable_key",
    "stable_key_bytes",
]
