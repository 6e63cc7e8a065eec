"""Outpost models: transaction simulator, LightGBM training exported to ONNX, the model registry and runner,
model explanations, and the hybrid rules + model score.

The simulator, the loading of transaction files and training import pandas; their names load on first use, so that
a serving process, which never needs them, starts without pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features import lazy_names
from models._errors import DataError, ExportError, FeatureMismatchError, ModelError, RegistryError, TrainingError
from models._hybrid import HybridScores, combine_scores, hit_points, hybrid_scores
from models._reasons import model_reason, reason_shares
from models._runner import ModelRunner, default_model_dir

if TYPE_CHECKING:
    from models._loading import load_transactions
    from models._simulator import TYPOLOGIES, SimulationConfig, simulate
    from models._training import TrainingConfig, TrainingResult, train_model

__getattr__ = lazy_names(globals(), {
    "models._loading": ("load_transactions",),
    "models._simulator": ("TYPOLOGIES", "SimulationConfig", "simulate"),
    "models._training": ("TrainingConfig", "TrainingResult", "train_model"),
})

__all__ = [
    "TYPOLOGIES",
    "DataError",
    "ExportError",
    "FeatureMismatchError",
    "HybridScores",
    "ModelError",
    "ModelRunner",
    "RegistryError",
    "SimulationConfig",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "combine_scores",
    "default_model_dir",
    "hit_points",
    "hybrid_scores",
    "load_transactions",
    "model_reason",
    "reason_shares",
    "simulate",
    "train_model",
]
