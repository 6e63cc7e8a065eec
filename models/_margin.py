"""The served graph: a binary tree-ensemble classifier rewritten as the regressor of its log-odds margin.

An exported model is a ``TreeEnsembleClassifier`` with a logistic post-transform: ONNX Runtime sums the trees'
leaf values (the margin), applies the sigmoid, writes two probability columns and a label, and the graph copies
and casts those. Calibration then takes the logit of the probability again. The same trees as a
``TreeEnsembleRegressor`` without a post-transform give the margin itself, with none of that work: 11% less CPU
per row at batches of 16 to 500 and 19% for a single row (in process, same rows, both sessions alternating),
and no float32 rounding of the probability before the logit.

The rewrite is done when the model is loaded, so models already exported are served this way too; the file on
disk, its checksum and the parity check of the export are unchanged. A graph of any other shape is served as
it is (``margin_model`` returns None).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

__all__ = ["MARGIN_OUTPUT", "margin_model"]

MARGIN_OUTPUT = "margin"
_TREE_ATTRIBUTES = (
    "nodes_falsenodeids", "nodes_featureids", "nodes_hitrates", "nodes_missing_value_tracks_true", "nodes_modes",
    "nodes_nodeids", "nodes_treeids", "nodes_truenodeids", "nodes_values",
)
_LEAF_ATTRIBUTES = {"class_nodeids": "target_nodeids", "class_treeids": "target_treeids",
                    "class_weights": "target_weights"}


def margin_model(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The regressor graph computing ``model``'s margin, or None when ``model`` is not a binary classifier whose
    probability of class 1 is the sigmoid of its trees' sum (one class weight per leaf, no base values)."""
    trees = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(trees) != 1 or len(model.graph.input) != 1:
        return None
    node = trees[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    labels = attrs.get("classlabels_int64s")
    if (
        attrs.get("post_transform") != b"LOGISTIC"
        or labels is None or len(labels) != 2
        or set(attrs.get("class_ids", [])) != {0}
        or attrs.get("base_values")
        or any(name.endswith("_as_tensor") for name in attrs)
        or node.input[0] != model.graph.input[0].name
        or not all(name in attrs for name in (*_TREE_ATTRIBUTES, *_LEAF_ATTRIBUTES))
    ):
        return None
    regressor = helper.make_node(
        "TreeEnsembleRegressor", [node.input[0]], [MARGIN_OUTPUT], domain="ai.onnx.ml",
        n_targets=1, post_transform="NONE", aggregate_function="SUM",
        target_ids=[0] * len(attrs["class_nodeids"]),
        **{name: attrs[name] for name in _TREE_ATTRIBUTES},
        **{to: attrs[name] for name, to in _LEAF_ATTRIBUTES.items()},
    )
    source = model.graph.input[0]
    batch = source.type.tensor_type.shape.dim[0]
    output = helper.make_tensor_value_info(
        MARGIN_OUTPUT, TensorProto.FLOAT, [batch.dim_param or batch.dim_value or None, 1]
    )
    graph = helper.make_graph([regressor], f"{model.graph.name}_margin", [source], [output])
    ml_opset = next((o.version for o in model.opset_import if o.domain == "ai.onnx.ml"), 1)
    default_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 9)
    margin = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", default_opset), helper.make_opsetid("ai.onnx.ml", ml_opset)]
    )
    margin.ir_version = model.ir_version
    return margin
