"""Training end to end on a tiny simulation: replay, LightGBM, calibration, export, registry, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import FeatureConfig, FeatureEngine, encode_frame
from models import ModelRunner, SimulationConfig, TrainingConfig, TrainingError, simulate, train_model
from models._training import TimeSplit, encode_times, replay_features

SIM = SimulationConfig(accounts=700, days=36, seed=4, fraud_scale=5.0)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """A tiny simulation with enough fraud in every period."""
    return simulate(SIM)


def _config(out: Path, **kw: object) -> TrainingConfig:
    return TrainingConfig(out_dir=out, simulation=SIM, num_trees=15, num_leaves=7, min_data_in_leaf=20,
                          warmup_days=3, num_threads=1, command="test", **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """One trained version directory and its metadata."""
    result = train_model(frame, _config(tmp_path_factory.mktemp("registry")))
    return result.version_dir, result.metadata


def test_version_directory_is_complete(trained: tuple[Path, dict[str, object]]) -> None:
    """The version holds model.onnx, node_covers.npy and metadata.json with the documented keys."""
    version_dir, meta = trained
    assert {p.name for p in version_dir.iterdir()} == {"model.onnx", "node_covers.npy", "lightgbm.txt",
                                                       "metadata.json"}
    on_disk = json.loads((version_dir / "metadata.json").read_text())
    for key in ("version", "created_at", "features", "calibration", "thresholds", "metrics", "evaluation",
                "parity", "training", "files"):
        assert key in on_disk, key
    assert on_disk["training"]["command"] == "test"
    assert len(on_disk["training"]["data_fingerprint"]) == 64
    assert on_disk == meta


def test_parity_is_reported_and_bounded(trained: tuple[Path, dict[str, object]]) -> None:
    """The export's max |p_onnx - p_lightgbm| over the test rows is recorded and within the bound."""
    parity = trained[1]["parity"]
    assert isinstance(parity, dict)
    assert parity["rows"] > 0
    assert 0 <= parity["max_abs_diff"] <= parity["bound"]


def test_model_loads_and_ranks_fraud_higher(frame: pd.DataFrame, trained: tuple[Path, dict[str, object]]) -> None:
    """The registered model loads and scores fraud rows of the test period above normal ones on average."""
    runner = ModelRunner.load(trained[0])
    config = _config(trained[0].parent)
    x = replay_features(frame, config)
    times = encode_times(frame)
    test = TimeSplit.of(times, config).masks(times)[2]
    p = runner.predict(x[test])
    y = frame["is_fraud"].to_numpy()[test] == 1
    assert p[y].mean() > 5 * p[~y].mean()


def test_evaluation_report_saved(trained: tuple[Path, dict[str, object]]) -> None:
    """Rules, model and hybrid metrics at the alert rate are saved in the metadata."""
    report = trained[1]["evaluation"]
    assert isinstance(report, dict)
    for system in ("model", "rules", "hybrid", "hybrid_fitted"):
        assert report[system]["alert_rate"] == 0.005
        assert 0 <= report[system]["average_precision"] <= 1
    assert report["rule_stats"]


def test_retraining_reproduces(frame: pd.DataFrame, trained: tuple[Path, dict[str, object]],
                               tmp_path: Path) -> None:
    """Training again on the same data and config gives the same version name, model bytes and metrics."""
    again = train_model(frame, _config(tmp_path))
    assert again.version_dir.name == trained[0].name
    assert (again.version_dir / "model.onnx").read_bytes() == (trained[0] / "model.onnx").read_bytes()
    assert again.metadata["metrics"] == trained[1]["metrics"]


def test_sliced_replay_equals_one_replay(frame: pd.DataFrame) -> None:
    """Replaying in slices (for the progress bar) gives the same matrix as one FeatureEngine.replay call."""
    config = _config(Path("unused"))
    sliced = replay_features(frame, config, slices=7)
    from models._training import _outcomes

    txns = encode_frame(frame, FeatureConfig())
    with FeatureEngine.open(FeatureConfig()) as engine:
        whole = engine.replay(txns, _outcomes(frame, txns["event_time_us"], config))
    np.testing.assert_array_equal(sliced, whole)


def test_labels_arrive_after_the_delay(frame: pd.DataFrame) -> None:
    """Counterparty fraud reports are 0 on every row before the first fraud's label delay has passed."""
    config = _config(Path("unused"), label_delay_days=10.0)
    x = replay_features(frame, config)
    from features import FEATURE_INDEX

    times = encode_times(frame)
    first_fraud = times[frame["is_fraud"].to_numpy() == 1].min()
    early = times < first_fraud + 10 * 86_400 * 1_000_000
    assert x[early, FEATURE_INDEX["counterparty_fraud_reports"]].max() == 0
    assert x[~early, FEATURE_INDEX["counterparty_fraud_reports"]].max() > 0


def test_requires_labels(frame: pd.DataFrame, tmp_path: Path) -> None:
    """Training data without an is_fraud column is refused with a hint to map it."""
    with pytest.raises(TrainingError, match="is_fraud"):
        train_model(frame.drop(columns=["is_fraud"]), _config(tmp_path))
