"""Outpost models: transaction simulator, LightGBM training exported to ONNX, the model registry and runner,
model explanations, and the hybrid rules + model score."""

from models._errors import DataError, ExportError, FeatureMismatchError, ModelError, RegistryError, TrainingError
from models._hybrid import combine_scores
from models._loading import load_transactions
from models._reasons import model_reason
from models._runner import ModelRunner, default_model_dir
from models._simulator import TYPOLOGIES, SimulationConfig, simulate
from models._training import TrainingConfig, TrainingResult, train_model

__all__ = [
    "TYPOLOGIES",
    "DataError",
    "ExportError",
    "FeatureMismatchError",
    "ModelError",
    "ModelRunner",
    "RegistryError",
    "SimulationConfig",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "combine_scores",
    "default_model_dir",
    "load_transactions",
    "model_reason",
    "simulate",
    "train_model",
]
