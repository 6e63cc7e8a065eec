"""Export of a trained LightGBM booster to ONNX, and the parity check of the export against LightGBM.

The converter (onnxmltools) stores split thresholds as float32 by rounding to nearest. We
train on float32-rounded features and round every threshold *down* to the largest float32
not above LightGBM's double threshold, so that for float32 inputs ``x <= t32`` decides exactly
like LightGBM's ``x <= t``; the remaining difference is float32 summation of leaf values.
The graph's outputs get a symbolic batch dimension so ONNX Runtime logs no shape warnings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from models._errors import ExportError

__all__ = ["ONNX_INPUT", "ONNX_OUTPUT", "booster_to_onnx", "parity"]

ONNX_INPUT = "input"
ONNX_OUTPUT = "probabilities"
_BATCH = "batch"
_TARGET_OPSET = 15


def _round_thresholds_down(model: onnx.ModelProto, dump: dict[str, Any]) -> None:
    """Replace each float32 threshold by the largest float32 <= LightGBM's double threshold.

    The exported nodes are matched to LightGBM's by walking both trees together (left child =
    ONNX true branch), so the match does not depend on the converter's node numbering.
    """
    ensemble = _tree_node(model)
    attrs = {a.name: a for a in ensemble.attribute}
    tree_ids = list(helper.get_attribute_value(attrs["nodes_treeids"]))
    node_ids = list(helper.get_attribute_value(attrs["nodes_nodeids"]))
    modes = [m.decode() for m in helper.get_attribute_value(attrs["nodes_modes"])]
    features = list(helper.get_attribute_value(attrs["nodes_featureids"]))
    true_ids = list(helper.get_attribute_value(attrs["nodes_truenodeids"]))
    false_ids = list(helper.get_attribute_value(attrs["nodes_falsenodeids"]))
    values = [float(v) for v in helper.get_attribute_value(attrs["nodes_values"])]
    index = {(t, i): k for k, (t, i) in enumerate(zip(tree_ids, node_ids, strict=True))}
    for info in dump["tree_info"]:
        tree = int(info["tree_index"])
        stack: list[tuple[dict[str, Any], int]] = [(info["tree_structure"], index[(tree, 0)])]
        while stack:
            node, k = stack.pop()
            if "split_index" not in node:
                if modes[k] != "LEAF":
                    raise ExportError(f"exported tree {tree} has a split where LightGBM has a leaf; "
                                      "the converter changed: pin onnxmltools or update this check")
                continue
            if modes[k] != "BRANCH_LEQ":
                raise ExportError(f"unexpected split mode {modes[k]!r} in exported tree {tree}; categorical "
                                  "splits are not supported: train on numeric features only")
            threshold = float(node["threshold"])
            if int(node["split_feature"]) != features[k] or float(np.float32(threshold)) != values[k]:
                raise ExportError(f"exported tree {tree} does not match LightGBM's at node {node_ids[k]}; "
                                  "the converter changed: pin onnxmltools or update this check")
            t32 = np.float32(threshold)
            if float(t32) > threshold:
                t32 = np.nextafter(t32, np.float32(-np.inf))
            values[k] = float(t32)
            stack.append((node["left_child"], index[(tree, true_ids[k])]))
            stack.append((node["right_child"], index[(tree, false_ids[k])]))
    attrs["nodes_values"].CopyFrom(helper.make_attribute("nodes_values", values))


def _tree_node(model: onnx.ModelProto) -> onnx.NodeProto:
    for node in model.graph.node:
        if node.op_type == "TreeEnsembleClassifier":
            return node
    raise ExportError("the converted model has no TreeEnsembleClassifier node; is the booster a binary classifier?")


def _fix_output_shapes(model: onnx.ModelProto, n_features: int) -> None:
    """Give inputs and outputs a symbolic batch dimension: [batch, F] in, [batch] labels, [batch, 2] probabilities."""
    wanted: dict[str, list[str | int]] = {
        ONNX_INPUT: [_BATCH, n_features], "label": [_BATCH], ONNX_OUTPUT: [_BATCH, 2],
    }
    for value in (*model.graph.input, *model.graph.output):
        if value.name not in wanted:
            continue
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for d in wanted[value.name]:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d


def booster_to_onnx(booster: Any, feature_names: tuple[str, ...]) -> onnx.ModelProto:
    """Convert a binary LightGBM booster (features in ``feature_names`` order) to a checked ONNX model."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    try:
        model: onnx.ModelProto = onnxmltools.convert_lightgbm(
            booster,
            initial_types=[(ONNX_INPUT, FloatTensorType([None, len(feature_names)]))],
            zipmap=False,
            target_opset=_TARGET_OPSET,
        )
    except Exception as exc:  # onnxmltools raises bare RuntimeError/TypeError: translate here, once
        raise ExportError(f"onnxmltools could not convert the booster: {exc}") from exc
    _round_thresholds_down(model, booster.dump_model())
    _fix_output_shapes(model, len(feature_names))
    model.graph.name = "outpost_fraud_gbm"  # the converter picks a random uuid; retraining must give equal bytes
    model.doc_string = "Outpost fraud model; input columns: " + ",".join(feature_names)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX model is invalid: {exc}") from exc
    return model


def parity(model_bytes: bytes, booster: Any, x: np.ndarray) -> float:
    """Max |p_onnx - p_lightgbm| over the rows of ``x`` (model columns, float64 already float32-rounded)."""
    from models._runner import open_session

    session = open_session(model_bytes)
    onnx_p = session.run([ONNX_OUTPUT], {ONNX_INPUT: x.astype(np.float32)})[0][:, 1].astype(np.float64)
    lgb_p = np.asarray(booster.predict(x), dtype=np.float64)
    return float(np.max(np.abs(onnx_p - lgb_p))) if x.shape[0] else 0.0
