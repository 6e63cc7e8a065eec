"""The error hierarchy of the models package: every failure the package raises on purpose.

::

    ModelError                      root: catch this to handle any model-side failure
    ├── DataError                   a transaction file or column mapping cannot be read as labelled transactions
    ├── TrainingError               training cannot proceed (too few labels, a split is empty, ...)
    ├── ExportError                 the ONNX export failed or disagrees with LightGBM beyond the bound
    └── RegistryError               a model version directory is missing, incomplete or inconsistent
        └── FeatureMismatchError    the model's features do not match the feature catalogue

onnxruntime's own exceptions are translated into ``RegistryError`` in exactly one place
(``models._runner._open_session``); LightGBM and onnxmltools failures into ``ExportError``
in ``models._export``.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "ExportError",
    "FeatureMismatchError",
    "ModelError",
    "RegistryError",
    "TrainingError",
]


class ModelError(Exception):
    """Root of every error the models package raises."""


class DataError(ModelError):
    """A transaction file or a column mapping cannot be turned into canonical transactions."""


class TrainingError(ModelError):
    """Training cannot proceed with the given data or configuration."""


class ExportError(ModelError):
    """The ONNX export failed or its predictions differ from LightGBM's beyond the configured bound."""


class RegistryError(ModelError):
    """A model version directory cannot be loaded."""


class FeatureMismatchError(RegistryError):
    """The model was trained on features the current catalogue does not offer to models.

    ``unknown`` are names missing from the catalogue, ``not_model_input`` names the catalogue
    does not offer to models, ``kind_changed`` names whose kind changed since training.
    """

    def __init__(
        self,
        message: str,
        *,
        unknown: tuple[str, ...] = (),
        not_model_input: tuple[str, ...] = (),
        kind_changed: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.unknown = unknown
        self.not_model_input = not_model_input
        self.kind_changed = kind_changed
