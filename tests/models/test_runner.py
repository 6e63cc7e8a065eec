"""ModelRunner: ONNX parity with LightGBM, feature checks, calibration, explanations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnx
import pytest

from features import FEATURE_INDEX, FEATURE_NAMES
from models import FeatureMismatchError, ModelError, ModelRunner, RegistryError
from models._export import ONNX_OUTPUT
from models._training import model_feature_names

Model = tuple[Path, lgb.Booster, np.ndarray]


def _model_cols(x: np.ndarray) -> np.ndarray:
    return x[:, [FEATURE_INDEX[n] for n in model_feature_names()]]


def test_onnx_matches_lightgbm(synthetic_model: Model) -> None:
    """The exported model's raw probability equals LightGBM's on held-out rows to float32 precision."""
    version_dir, booster, x = synthetic_model
    runner = ModelRunner.load(version_dir)
    onnx_p = runner.raw_probability(x)
    lgb_p = booster.predict(_model_cols(x))
    assert np.max(np.abs(onnx_p - lgb_p)) < 1e-5


def test_onnx_matches_lightgbm_at_thresholds(synthetic_model: Model) -> None:
    """Inputs sitting exactly on (float32) split thresholds and their neighbours take LightGBM's branch."""
    version_dir, booster, x = synthetic_model
    runner = ModelRunner.load(version_dir)
    forest = runner._forest
    rng = np.random.default_rng(5)
    rows = x[:300].copy()
    model_cols = [FEATURE_INDEX[n] for n in model_feature_names()]
    splits = np.flatnonzero(forest.feature >= 0)
    for i in range(rows.shape[0]):
        k = int(rng.choice(splits))
        t = np.float32(forest.threshold[k])
        value = [t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf))][i % 3]
        rows[i, model_cols[int(forest.feature[k])]] = float(value)
    assert np.max(np.abs(runner.raw_probability(rows) - booster.predict(_model_cols(rows)))) < 1e-5


def test_output_shapes_are_symbolic_batch(synthetic_model: Model) -> None:
    """Graph outputs declare a symbolic batch dimension, so ONNX Runtime has no shape to complain about."""
    version_dir, _, _ = synthetic_model
    model = onnx.load(version_dir / "model.onnx")
    outputs = {o.name: o.type.tensor_type.shape.dim for o in model.graph.output}
    assert [d.dim_param or d.dim_value for d in outputs[ONNX_OUTPUT]] == ["batch", 2]
    assert [d.dim_param or d.dim_value for d in outputs["label"]] == ["batch"]
    assert not any(n.op_type == "ZipMap" for n in model.graph.node)


@pytest.mark.parametrize("n", [1, 7, 256])
def test_predict_shapes_and_range(synthetic_model: Model, n: int) -> None:
    """predict returns one calibrated probability in (0, 1) per row for any batch size."""
    version_dir, _, x = synthetic_model
    p = ModelRunner.load(version_dir).predict(x[:n])
    assert p.shape == (n,)
    assert p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))


def test_predict_rejects_wrong_width(synthetic_model: Model) -> None:
    """A matrix that is not in full catalogue width is refused with a ModelError."""
    version_dir, _, x = synthetic_model
    with pytest.raises(ModelError, match="catalogue order"):
        ModelRunner.load(version_dir).predict(x[:, :5])


def test_calibration_is_monotone(synthetic_model: Model) -> None:
    """Calibrated probability never decreases as the raw probability increases."""
    runner = ModelRunner.load(synthetic_model[0])
    raw = np.linspace(0.0, 1.0, 10_001)
    calibrated = runner.calibrate(raw)
    assert np.all(np.diff(calibrated) >= 0)
    assert calibrated[0] < calibrated[-1]


def _copy_with_metadata(src: Path, dst: Path, **changes: object) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "metadata.json").read_text())
    meta.update(changes)
    (dst / "metadata.json").write_text(json.dumps(meta))
    return dst


def test_rejects_unknown_feature_naming_it(synthetic_model: Model, tmp_path: Path) -> None:
    """A model trained on a feature the catalogue lacks is refused, and the error names the feature."""
    src = synthetic_model[0]
    meta = json.loads((src / "metadata.json").read_text())
    features = meta["features"]
    features[3] = {"name": "fan_in_48h", "kind": "int"}
    bad = _copy_with_metadata(src, tmp_path / "bad", features=features)
    with pytest.raises(FeatureMismatchError, match="fan_in_48h") as info:
        ModelRunner.load(bad)
    assert info.value.unknown == ("fan_in_48h",)


def test_rejects_changed_feature_kind(synthetic_model: Model, tmp_path: Path) -> None:
    """A feature whose kind changed since training is named in the error."""
    src = synthetic_model[0]
    meta = json.loads((src / "metadata.json").read_text())
    features = meta["features"]
    name = features[0]["name"]
    features[0] = {"name": name, "kind": "enum"}
    bad = _copy_with_metadata(src, tmp_path / "bad", features=features)
    with pytest.raises(FeatureMismatchError, match=name):
        ModelRunner.load(bad)


def test_rejects_tampered_model_file(synthetic_model: Model, tmp_path: Path) -> None:
    """A model.onnx whose sha256 differs from the metadata's is refused."""
    bad = tmp_path / "bad"
    shutil.copytree(synthetic_model[0], bad)
    (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(RegistryError, match="sha256"):
        ModelRunner.load(bad)


def test_missing_directory_is_a_registry_error(tmp_path: Path) -> None:
    """Loading a directory without metadata.json says it is not a model version."""
    with pytest.raises(RegistryError, match="not a model version directory"):
        ModelRunner.load(tmp_path)


def test_contributions_sum_to_raw_margin(synthetic_model: Model) -> None:
    """Per-feature contributions plus the bias equal LightGBM's raw margin on sample rows."""
    version_dir, booster, x = synthetic_model
    runner = ModelRunner.load(version_dir)
    contributions = runner.contributions(x[:200])
    raw = booster.predict(_model_cols(x[:200]), raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1), raw, atol=1e-5)
    np.testing.assert_allclose(runner.margins(x[:200]), raw, atol=1e-5)


def _reference_contributions(runner: ModelRunner, cols: np.ndarray, node_value: np.ndarray) -> np.ndarray:
    """The Saabas walk in plain Python over the Forest's own arrays, in the kernel's order of additions."""
    f = runner._forest
    out = np.zeros((cols.shape[0], cols.shape[1] + 1))
    for r, row in enumerate(cols):
        bias = f.base_value
        for root in f.roots.tolist():
            node = root
            bias += node_value[node]
            while f.feature[node] >= 0:
                value = row[f.feature[node]]
                go_true = bool(f.missing_true[node]) if np.isnan(value) else bool(value <= f.threshold[node])
                child = int(f.true_child[node] if go_true else f.false_child[node])
                out[r, f.feature[node]] += node_value[child] - node_value[node]
                node = child
        out[r, -1] += bias
    return out


def test_packed_contributions_equal_the_plain_walk_bit_for_bit(synthetic_model: Model) -> None:
    """The compiled walk over the packed node tables gives exactly the plain walk's sums, missing values included."""
    version_dir, _, x = synthetic_model
    runner = ModelRunner.load(version_dir)
    rows = x[:60].copy()
    rows[np.random.default_rng(5).random(rows.shape) < 0.15] = np.nan
    cols = runner._model_columns(rows)
    node_value = runner._packed.values[:, 1]
    assert np.array_equal(runner.contributions(rows), _reference_contributions(runner, cols, node_value))


def test_contributions_match_onnx_output(synthetic_model: Model) -> None:
    """Contributions sum to the logit of what ONNX Runtime serves (explanations explain the served score)."""
    runner = ModelRunner.load(synthetic_model[0])
    x = synthetic_model[2][:100]
    p = runner.raw_probability(x)
    np.testing.assert_allclose(runner.contributions(x).sum(axis=1), np.log(p / (1 - p)), atol=1e-4)


def test_explain_returns_top_positive_descending(synthetic_model: Model) -> None:
    """explain gives at most k (name, contribution) pairs, all positive, largest first, named by catalogue."""
    runner = ModelRunner.load(synthetic_model[0])
    x = synthetic_model[2]
    row = x[int(np.argmax(runner.predict(x)))]
    top = runner.explain(row)
    assert 1 <= len(top) <= 3
    values = [v for _, v in top]
    assert values == sorted(values, reverse=True)
    assert all(v > 0 for v in values)
    assert all(name in FEATURE_NAMES for name, _ in top)
    # The synthetic label depends on these two features; the riskiest row is explained by them.
    assert {name for name, _ in top} & {"amount_vs_typical", "fan_in_24h"}
    assert len(runner.explain(row, k=1)) == 1


def test_warm_runs(synthetic_model: Model) -> None:
    """warm() runs predictions and an explanation without error and changes nothing."""
    runner = ModelRunner.load(synthetic_model[0])
    x = synthetic_model[2][:5]
    before = runner.predict(x)
    runner.warm()
    np.testing.assert_array_equal(runner.predict(x), before)


def test_explain_rows_equals_explain_row_by_row(synthetic_model: Model) -> None:
    """explain_rows over a matrix gives, row for row, exactly what explain gives for each row alone."""
    runner = ModelRunner.load(synthetic_model[0])
    x = synthetic_model[2][:200]
    batched = runner.explain_rows(x, k=4)
    assert batched == [runner.explain(row, k=4) for row in x]
    assert any(batched) and any(len(top) > 1 for top in batched)
