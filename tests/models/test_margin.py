"""The served margin graph: same scores as the exported classifier, and other graph shapes served as they are."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnx
import pytest
from onnx import helper

import models._runner as runner_module
from features import FEATURE_INDEX
from models import ModelRunner
from models._margin import MARGIN_OUTPUT, margin_model
from models._runner import _platt, open_session
from models._training import model_feature_names

Model = tuple[Path, lgb.Booster, np.ndarray]


def _exported(version_dir: Path) -> onnx.ModelProto:
    return onnx.load(version_dir / "model.onnx")


def _calibrated_from_classifier(runner: ModelRunner, version_dir: Path, x: np.ndarray) -> np.ndarray:
    """What the exported graph gives, calibrated as its metadata says: sigmoid(a * logit(p_onnx) + b)."""
    session = open_session((version_dir / "model.onnx").read_bytes())
    p = session.run(["probabilities"], {"input": runner._model_columns(x)})[0][:, 1].astype(np.float64)
    out = np.empty(len(x))
    _platt(p, runner._a, runner._b, out)
    return out


def test_a_runner_serves_the_margin_graph(synthetic_model: Model) -> None:
    """An exported classifier is served as the regressor of its margin, equal to LightGBM's raw score."""
    version_dir, booster, x = synthetic_model
    runner = ModelRunner.load(version_dir)
    assert runner._output_name == MARGIN_OUTPUT
    margin = runner._run(x)[:, 0]
    cols = x[:, [FEATURE_INDEX[n] for n in model_feature_names()]]
    np.testing.assert_allclose(margin, booster.predict(cols, raw_score=True), atol=1e-5)


def test_margin_scores_equal_the_exported_graphs(synthetic_model: Model) -> None:
    """Calibrated probabilities from the margin equal those from the exported graph's probability, batch sizes 1..n."""
    version_dir, _, x = synthetic_model
    runner = ModelRunner.load(version_dir)
    expected = _calibrated_from_classifier(runner, version_dir, x)
    np.testing.assert_allclose(runner.predict(x), expected, rtol=0, atol=2e-6)
    for i in range(5):
        np.testing.assert_allclose(runner.predict(x[i : i + 1]), expected[i : i + 1], rtol=0, atol=2e-6)


def test_saturated_margins_are_clipped_as_probabilities_were(synthetic_model: Model) -> None:
    """Margins beyond the logit of 1 - 1e-7 calibrate as the clipped probability did, at both ends."""
    runner = ModelRunner.load(synthetic_model[0])
    margins = np.array([[-60.0], [-16.2], [0.0], [16.2], [60.0]], dtype=np.float32)
    out = np.empty(len(margins))
    runner_module._platt_margin(margins, runner._a, runner._b, out)
    p = np.clip(1.0 / (1.0 + np.exp(-margins[:, 0].astype(np.float64))), 1e-7, 1 - 1e-7)
    expected = np.empty(len(p))
    _platt(p, runner._a, runner._b, expected)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("post_transform", "NONE"), ("base_values", [0.5]), ("classlabels_int64s", [0, 1, 2])],
)
def test_other_classifiers_are_not_rewritten(synthetic_model: Model, attribute: str, value: object) -> None:
    """A graph whose probability is not the sigmoid of its trees' sum is left as it is."""
    model = _exported(synthetic_model[0])
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier")
    kept = [a for a in node.attribute if a.name != attribute]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(attribute, value)])
    assert margin_model(model) is None
    assert margin_model(_exported(synthetic_model[0])) is not None


def test_a_graph_served_as_exported_scores_the_same(synthetic_model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    """When no rewrite applies, the runner serves the exported graph's probability and calibrates it."""
    version_dir, _, x = synthetic_model
    monkeypatch.setattr(runner_module, "margin_model", lambda model: None)
    runner = ModelRunner.load(version_dir)
    assert runner._output_name == "probabilities"
    np.testing.assert_array_equal(runner.predict(x[:50]), _calibrated_from_classifier(runner, version_dir, x[:50]))
    monkeypatch.undo()
    margin_runner = ModelRunner.load(version_dir)
    np.testing.assert_allclose(runner.raw_probability(x[:50]), margin_runner.raw_probability(x[:50]), atol=1e-6)
