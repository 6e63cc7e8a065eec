"""The exported trees as flat numpy arrays, and numba kernels over them: raw margins and path contributions.

Explanations are computed from the trees in ``model.onnx`` itself (not from LightGBM), so
what is explained is exactly what is served. A node's value is the cover-weighted mean of its
leaves (covers: training rows routed through the tree at export, stored next to the model);
walking a row from the root to its leaf, each split adds ``value(child) - value(node)`` to the
split feature (the Saabas tree-path attribution). Contributions plus the bias (sum of root
values) telescope to the raw margin exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import onnx
from onnx import helper

from models._errors import RegistryError

__all__ = ["Forest", "PackedNodes", "contributions_kernel", "forest_from_onnx", "pack_nodes"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Forest:
    """Trees of one model: node arrays indexed by a global node number; ``roots[t]`` is tree t's root."""

    roots: np.ndarray  # (T,) int64
    feature: np.ndarray  # (N,) int64, -1 for leaves
    threshold: np.ndarray  # (N,) float32: go to ``true_child`` when x <= threshold
    true_child: np.ndarray  # (N,) int64
    false_child: np.ndarray  # (N,) int64
    missing_true: np.ndarray  # (N,) bool: NaN goes to the true child
    leaf_value: np.ndarray  # (N,) float64, 0 for internal nodes
    base_value: float  # added to every margin

    @property
    def n_nodes(self) -> int:
        return int(self.feature.size)

    def route_counts(self, x: np.ndarray) -> np.ndarray:
        """How many rows of ``x`` (float32, model columns) pass through each node."""
        counts = np.zeros(self.n_nodes, dtype=np.int64)
        _route_counts(np.ascontiguousarray(x, dtype=np.float32), self.roots, self.feature, self.threshold,
                      self.true_child, self.false_child, self.missing_true, counts)
        return counts

    def node_values(self, covers: np.ndarray) -> np.ndarray:
        """Cover-weighted mean leaf value below every node (a node never reached counts its children equally)."""
        if covers.shape != (self.n_nodes,):
            raise RegistryError(f"node covers have shape {covers.shape}, the trees have {self.n_nodes} nodes: "
                                "the covers file belongs to another model; re-export the model")
        values = np.zeros(self.n_nodes, dtype=np.float64)
        weights = np.zeros(self.n_nodes, dtype=np.float64)
        for root in self.roots:
            _fill_values(int(root), self.feature, self.true_child, self.false_child, self.leaf_value,
                         covers.astype(np.float64), values, weights)
        return values

    def margins(self, x: np.ndarray) -> np.ndarray:
        """Raw margins (log-odds) of rows of ``x`` evaluated on these trees."""
        out = np.empty(x.shape[0], dtype=np.float64)
        _margins(np.ascontiguousarray(x, dtype=np.float32), self.roots, self.feature, self.threshold,
                 self.true_child, self.false_child, self.missing_true, self.leaf_value, self.base_value, out)
        return out


def forest_from_onnx(model: onnx.ModelProto) -> Forest:
    """Flatten the TreeEnsembleClassifier of an exported binary model into a ``Forest``."""
    node = next((n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"), None)
    if node is None:
        raise RegistryError("model.onnx has no TreeEnsembleClassifier: it was not exported by models.train_model")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    tree_ids = np.asarray(attrs["nodes_treeids"], dtype=np.int64)
    node_ids = np.asarray(attrs["nodes_nodeids"], dtype=np.int64)
    modes = [m.decode() for m in attrs["nodes_modes"]]
    n = tree_ids.size
    key = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(tree_ids, node_ids, strict=True))}
    feature = np.where(np.array([m == "LEAF" for m in modes]), -1, np.asarray(attrs["nodes_featureids"]))
    if any(m not in ("LEAF", "BRANCH_LEQ") for m in modes):
        raise RegistryError(
            "model.onnx uses split modes other than BRANCH_LEQ; only LightGBM numeric splits are supported"
        )
    true_child = np.full(n, -1, dtype=np.int64)
    false_child = np.full(n, -1, dtype=np.int64)
    for k in range(n):
        if feature[k] >= 0:
            true_child[k] = key[(int(tree_ids[k]), int(attrs["nodes_truenodeids"][k]))]
            false_child[k] = key[(int(tree_ids[k]), int(attrs["nodes_falsenodeids"][k]))]
    leaf_value = np.zeros(n, dtype=np.float64)
    class_ids = np.asarray(attrs["class_ids"], dtype=np.int64)
    if class_ids.size and np.any(class_ids != class_ids[0]):
        raise RegistryError("model.onnx is not a binary LightGBM export (several class ids carry weights)")
    for t, i, w in zip(attrs["class_treeids"], attrs["class_nodeids"], attrs["class_weights"], strict=True):
        leaf_value[key[(int(t), int(i))]] += float(w)
    roots = np.array(sorted({key[(int(t), 0)] for t in tree_ids}), dtype=np.int64)
    base = attrs.get("base_values")
    return Forest(
        roots=roots,
        feature=feature.astype(np.int64),
        threshold=np.asarray(attrs["nodes_values"], dtype=np.float32),
        true_child=true_child,
        false_child=false_child,
        missing_true=np.asarray(attrs["nodes_missing_value_tracks_true"], dtype=np.bool_),
        leaf_value=leaf_value,
        base_value=float(base[0]) if base else 0.0,
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _next(node: int, x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, true_child: np.ndarray,
          false_child: np.ndarray, missing_true: np.ndarray) -> int:
    value = x[feature[node]]
    go_true = missing_true[node] if np.isnan(value) else value <= threshold[node]
    child: int = true_child[node] if go_true else false_child[node]
    return child


@numba.njit(cache=True, nogil=True)
def _route_counts(x: np.ndarray, roots: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                  true_child: np.ndarray, false_child: np.ndarray, missing_true: np.ndarray,
                  counts: np.ndarray) -> None:
    for r in range(x.shape[0]):
        row = x[r]
        for root in roots:
            node = root
            counts[node] += 1
            while feature[node] >= 0:
                node = _next(node, row, feature, threshold, true_child, false_child, missing_true)
                counts[node] += 1


@numba.njit(cache=True, nogil=True)
def _margins(x: np.ndarray, roots: np.ndarray, feature: np.ndarray, threshold: np.ndarray, true_child: np.ndarray,
             false_child: np.ndarray, missing_true: np.ndarray, leaf_value: np.ndarray, base: float,
             out: np.ndarray) -> None:
    for r in range(x.shape[0]):
        row = x[r]
        total = base
        for root in roots:
            node = root
            while feature[node] >= 0:
                node = _next(node, row, feature, threshold, true_child, false_child, missing_true)
            total += leaf_value[node]
        out[r] = total


@dataclass(frozen=True, slots=True)
class PackedNodes:
    """The nodes as two compact tables for the contributions walk: a node visit reads two cache lines, not six.

    ``links[k]`` is (feature, true child, false child, NaN goes true) as int32, ``values[k]`` is (threshold, node
    value) as float64 (the float32 threshold widened exactly, so comparisons are unchanged).
    """

    links: np.ndarray  # (N, 4) int32
    values: np.ndarray  # (N, 2) float64


def pack_nodes(forest: Forest, node_values: np.ndarray) -> PackedNodes:
    """``forest``'s nodes with their cover-weighted ``node_values`` (see ``Forest.node_values``), packed."""
    links = np.stack(
        [forest.feature, forest.true_child, forest.false_child, forest.missing_true.astype(np.int64)], axis=1
    ).astype(np.int32)
    values = np.stack([forest.threshold.astype(np.float64), node_values.astype(np.float64)], axis=1)
    return PackedNodes(links=np.ascontiguousarray(links), values=np.ascontiguousarray(values))


@numba.njit(cache=True, nogil=True)
def contributions_kernel(x: np.ndarray, roots: np.ndarray, links: np.ndarray, values: np.ndarray, base: float,
                         out: np.ndarray) -> None:
    """out[r, f] += path contributions of feature f; out[r, F] = bias (base + sum of root values)."""
    n_features = x.shape[1]
    for r in range(x.shape[0]):
        row = x[r]
        acc = out[r]
        bias = base
        for root in roots:
            node = root
            here = values[node, 1]
            bias += here
            f = links[node, 0]
            while f >= 0:
                value = row[f]
                go_true = links[node, 3] != 0 if np.isnan(value) else value <= values[node, 0]
                child = links[node, 1] if go_true else links[node, 2]
                there = values[child, 1]
                acc[f] += there - here
                node, here = child, there
                f = links[node, 0]
        acc[n_features] += bias


def _fill_values(root: int, feature: np.ndarray, true_child: np.ndarray, false_child: np.ndarray,
                 leaf_value: np.ndarray, covers: np.ndarray, values: np.ndarray, weights: np.ndarray) -> None:
    # Post-order without recursion (trees can be deep): children before parents.
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if feature[node] < 0:
            values[node] = leaf_value[node]
            weights[node] = covers[node]
            continue
        if not expanded:
            stack.append((node, True))
            stack.append((int(true_child[node]), False))
            stack.append((int(false_child[node]), False))
            continue
        a, b = int(true_child[node]), int(false_child[node])
        wa, wb = weights[a], weights[b]
        if wa + wb > 0:
            values[node] = (wa * values[a] + wb * values[b]) / (wa + wb)
        else:
            values[node] = 0.5 * (values[a] + values[b])
        weights[node] = wa + wb
