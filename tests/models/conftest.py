"""Fixtures for the models tests: a small synthetic model version directory, built once per session."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from features import CATALOGUE, FEATURE_INDEX
from models._export import booster_to_onnx
from models._registry import COVERS_FILE, MODEL_FILE, write_metadata
from models._training import model_feature_names
from models._trees import forest_from_onnx


def synthetic_matrix(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A full catalogue feature matrix (float32-representable) with a label that depends on a few features."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(size=(n, len(CATALOGUE)))) * rng.integers(1, 50, len(CATALOGUE))
    x = x.astype(np.float32).astype(np.float64)
    signal = x[:, FEATURE_INDEX["amount_vs_typical"]] / 10 + x[:, FEATURE_INDEX["fan_in_24h"]] / 20
    y = (signal + rng.normal(size=n) > 3).astype(np.int64)
    return x, y


@pytest.fixture(scope="session")
def synthetic_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, lgb.Booster, np.ndarray]:
    """A registered model version trained on synthetic rows: (version dir, booster, model-column test rows)."""
    names = model_feature_names()
    x, y = synthetic_matrix(6000, seed=1)
    cols = [FEATURE_INDEX[n] for n in names]
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbose": -1, "deterministic": True, "force_row_wise": True,
         "num_threads": 1, "seed": 3},
        lgb.Dataset(x[:, cols], y),
        num_boost_round=40,
    )
    model = booster_to_onnx(booster, names)
    version_dir = tmp_path_factory.mktemp("registry") / "synthetic-1"
    version_dir.mkdir()
    (version_dir / MODEL_FILE).write_bytes(model.SerializeToString())
    np.save(version_dir / COVERS_FILE, forest_from_onnx(model).route_counts(x[:, cols].astype(np.float32)))
    write_metadata(version_dir, {
        "version": "synthetic-1",
        "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC).isoformat(),
        "features": [{"name": n, "kind": CATALOGUE[FEATURE_INDEX[n]].kind.value} for n in names],
        "calibration": {"method": "platt_on_logit", "a": 0.8, "b": -0.5},
    })
    x_test, _ = synthetic_matrix(2000, seed=2)
    return version_dir, booster, x_test
