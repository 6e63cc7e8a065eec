"""Feature catalogue, transaction records and per-account state for Outpost."""

from features._catalogue import CATALOGUE, ENUMS, FEATURE_INDEX, FEATURE_NAMES, FeatureKind, FeatureSpec, feature_index
from features._schema import NO_BALANCE, NO_TIME, TXN_DTYPE, new_batch, stable_key

__all__ = [
    "CATALOGUE",
    "ENUMS",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "NO_BALANCE",
    "NO_TIME",
    "TXN_DTYPE",
    "FeatureKind",
    "FeatureSpec",
    "feature_index",
    "new_batch",
    "stable_key",
]
