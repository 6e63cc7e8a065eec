"""The model registry layout: ``models/artifacts/<version>/`` and the files each version holds.

A version directory holds ``model.onnx`` (the exported trees, float32 input of the model's
features in metadata order), ``node_covers.npy`` (training rows through each tree node, for
explanations), ``lightgbm.txt`` (the booster itself, for parity checks and benchmarks only) and
``metadata.json`` (features, calibration, thresholds, metrics, evaluation
report, training data fingerprint, the command that made it, sha256 of the other files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = [
    "COVERS_FILE",
    "LIGHTGBM_FILE",
    "METADATA_FILE",
    "MODEL_FILE",
    "artifacts_root",
    "update_metadata",
    "write_metadata",
]

MODEL_FILE = "model.onnx"
COVERS_FILE = "node_covers.npy"
LIGHTGBM_FILE = "lightgbm.txt"  # the booster as LightGBM saved it: parity checks and benchmarks, never served
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


def artifacts_root() -> Path:
    """The registry shipped inside the package: models/artifacts."""
    return Path(__file__).resolve().parent / "artifacts"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_metadata(version_dir: Path, metadata: dict[str, Any]) -> None:
    """Write metadata.json with sorted keys and the sha256 of the model files, atomically."""
    metadata = dict(metadata)
    metadata["format"] = FORMAT_VERSION
    metadata["files"] = {name: file_sha256(version_dir / name) for name in (MODEL_FILE, COVERS_FILE, LIGHTGBM_FILE)
                         if (version_dir / name).is_file()}
    tmp = version_dir / (METADATA_FILE + ".tmp")
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(version_dir / METADATA_FILE)


def update_metadata(version_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge top-level ``fields`` into an existing metadata.json (e.g. an evaluation report) and rewrite it."""
    path = version_dir / METADATA_FILE
    metadata: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    metadata.update(fields)
    write_metadata(version_dir, metadata)
    return metadata
