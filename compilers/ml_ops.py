"""scikit-learn's linear ``ai.onnx.ml`` ops written as default-domain ONNX ops.

skl2onnx and onnxmltools export linear models (``LogisticRegression``, ``LinearSVC``, ``Ridge``,
pipelines with ``StandardScaler`` or ``Normalizer``) with ops of the ``ai.onnx.ml`` domain, which
ONNX Runtime runs and no accelerator runtime does: TensorRT's parser and onnx2tf have no such ops.
For those targets :func:`lower_ml_ops` rewrites each one it can into what it computes, following
ONNX Runtime's kernels (the FP32 reference):

* ``LinearClassifier``: ``scores = X @ W.T + b`` with ``W`` the first ``classes x features`` of
  the coefficients (as ONNX Runtime reads them), the post transform (``NONE``, ``LOGISTIC`` as
  Sigmoid, ``SOFTMAX``), and ``label = classlabels[argmax(scores)]``;
* ``LinearRegressor``: ``X @ W.T + b`` (post transform ``NONE``);
* ``Scaler``: ``(X - offset) * scale``;
* ``Normalizer``: each row divided by its ``MAX``, ``L1`` or ``L2`` norm.

What it can't write the same way (string class labels, ``PROBIT``/``SOFTMAX_ZERO``, a binary
classifier with one coefficient row, tree ensembles, SVMs) stays as it is, and the target's op
check names the op. Pure: a new model is returned, the given one is not changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ML_DOMAIN = "ai.onnx.ml"
LOWERED_OPSET = 17  # the default-domain forms written here (ReduceMax with an ``axes`` attribute)


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(v: object, default: str = "NONE") -> str:
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else str(v)


class _Writer:
    """Adds nodes and constants for one lowered node, named after it."""

    def __init__(self, node: onnx.NodeProto, taken: set[str]) -> None:
        self.base = node.name or f"{node.op_type}_{node.output[0]}"
        self.nodes: list[onnx.NodeProto] = []
        self.consts: list[onnx.TensorProto] = []
        self.taken = taken

    def name(self, what: str) -> str:
        n, i = f"{self.base}/{what}", 1
        while n in self.taken:
            i += 1
            n = f"{self.base}/{what}_{i}"
        self.taken.add(n)
        return n

    def const(self, what: str, value: np.ndarray) -> str:
        t = numpy_helper.from_array(value, self.name(what))
        self.consts.append(t)
        return t.name

    def op(self, op_type: str, inputs: list[str], what: str, out: str | None = None, **attrs: Any) -> str:
        out = out or self.name(f"{what}_output")
        node = helper.make_node(op_type, inputs, [out], name=self.name(what))
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(node)
        return out


def _features(model: onnx.ModelProto, tensor: str) -> tuple[int | None, int | None]:
    """The last dim and the element type of ``tensor`` where shape inference knows them."""
    values = {v.name: v for v in (*model.graph.input, *model.graph.value_info, *model.graph.output)}
    v = values.get(tensor)
    if v is None or not v.type.HasField("tensor_type"):
        return None, None
    tt = v.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tt.shape.dim]
    return (dims[-1] if dims and dims[-1] > 0 else None), (tt.elem_type or None)


def _float_input(w: _Writer, x: str, elem: int | None) -> str:
    if elem in (None, TensorProto.FLOAT):
        return x
    return w.op("Cast", [x], "cast", to=TensorProto.FLOAT)


def _linear(
    w: _Writer, x: str, coef: list[float], intercepts: list[float], rows: int, feats: int
) -> str | None:
    c = np.asarray(coef, np.float32)
    if rows <= 0 or feats <= 0 or c.size < rows * feats:
        return None
    weights = c[: rows * feats].reshape(rows, feats).T.copy()
    y = w.op("MatMul", [x, w.const("weights", weights)], "matmul")
    if intercepts:
        b = np.asarray(intercepts, np.float32)
        if b.size != rows:
            return None
        y = w.op("Add", [y, w.const("intercepts", b)], "add")
    return y


def _classifier(w: _Writer, node: onnx.NodeProto, feats: int | None, elem: int | None) -> bool:
    a = _attrs(node)
    labels = a.get("classlabels_ints")
    if not labels or a.get("classlabels_strings"):
        return False
    transform = _text(a.get("post_transform"))
    coef = list(a.get("coefficients") or [])  # type: ignore[call-overload]
    intercepts = list(a.get("intercepts") or [])  # type: ignore[call-overload]
    rows = len(intercepts) or len(labels)  # type: ignore[arg-type]
    if rows != len(labels) or rows < 2 or transform not in ("NONE", "LOGISTIC", "SOFTMAX"):  # type: ignore[arg-type]
        return False
    feats = feats or len(coef) // rows
    x = _float_input(w, node.input[0], elem)
    raw = _linear(w, x, coef, intercepts, rows, feats)
    if raw is None:
        return False
    scores_out = node.output[1] if len(node.output) > 1 and node.output[1] else None
    if transform == "LOGISTIC":
        scores = w.op("Sigmoid", [raw], "sigmoid", out=scores_out)
    elif transform == "SOFTMAX":
        scores = w.op("Softmax", [raw], "softmax", out=scores_out, axis=-1)
    else:
        scores = w.op("Identity", [raw], "scores", out=scores_out)
    if node.output[0]:
        index = w.op("ArgMax", [scores], "argmax", axis=1, keepdims=0)
        table = w.const("classlabels", np.asarray(labels, np.int64))
        w.op("Gather", [table, index], "label", out=node.output[0], axis=0)
    return True


def _regressor(w: _Writer, node: onnx.NodeProto, feats: int | None, elem: int | None) -> bool:
    a = _attrs(node)
    if _text(a.get("post_transform")) != "NONE":
        return False
    coef = list(a.get("coefficients") or [])  # type: ignore[call-overload]
    intercepts = list(a.get("intercepts") or [])  # type: ignore[call-overload]
    rows = int(a.get("targets") or 1)  # type: ignore[call-overload]
    feats = feats or len(coef) // rows
    y = _linear(w, _float_input(w, node.input[0], elem), coef, intercepts, rows, feats)
    if y is None:
        return False
    w.op("Identity", [y], "output", out=node.output[0])
    return True


def _scaler(w: _Writer, node: onnx.NodeProto, feats: int | None, elem: int | None) -> bool:
    a = _attrs(node)
    offset = np.asarray(list(a.get("offset") or [0.0]), np.float32)  # type: ignore[call-overload]
    scale = np.asarray(list(a.get("scale") or [1.0]), np.float32)  # type: ignore[call-overload]
    x = _float_input(w, node.input[0], elem)
    y = w.op("Sub", [x, w.const("offset", offset)], "sub")
    w.op("Mul", [y, w.const("scale", scale)], "mul", out=node.output[0])
    return True


def _normalizer(w: _Writer, node: onnx.NodeProto, feats: int | None, elem: int | None) -> bool:
    norm = _text(_attrs(node).get("norm"), "MAX")
    x = _float_input(w, node.input[0], elem)
    if norm == "MAX":
        d = w.op("ReduceMax", [x], "max", axes=[1], keepdims=1)
    elif norm == "L1":
        d = w.op("ReduceL1", [x], "l1", axes=[1], keepdims=1)
    elif norm == "L2":
        d = w.op("ReduceL2", [x], "l2", axes=[1], keepdims=1)
    else:
        return False
    w.op("Div", [x, d], "div", out=node.output[0])
    return True


_LOWER = {
    "LinearClassifier": _classifier,
    "LinearRegressor": _regressor,
    "Scaler": _scaler,
    "Normalizer": _normalizer,
}


def lower_ml_ops(model: onnx.ModelProto, steps: list[str]) -> onnx.ModelProto:
    """``model`` with each ``ai.onnx.ml`` op this module can write in default-domain ops
    rewritten (see the module docstring); ``model`` itself when there is none. Appends a step
    per op to ``steps``. The default-domain opset must be absent or 13 to 17 (the caller
    upgrades first); with it absent, :data:`LOWERED_OPSET` is imported."""
    candidates = [n for n in model.graph.node if n.domain == ML_DOMAIN and n.op_type in _LOWER]
    default = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if not candidates or (default is not None and not 13 <= default < 18):
        return model  # the Reduce* forms written here take ``axes`` as an attribute (13 to 17)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    try:
        typed = onnx.shape_inference.infer_shapes(out)
    except Exception:  # shapes only size the features; without them the coefficients do
        typed = out
    taken = {n.name for n in out.graph.node} | {t for n in out.graph.node for t in (*n.input, *n.output)}
    rebuilt: list[onnx.NodeProto] = []
    lowered: list[str] = []
    for node in out.graph.node:
        if node.domain != ML_DOMAIN or node.op_type not in _LOWER:
            rebuilt.append(node)
            continue
        w = _Writer(node, taken)
        feats, elem = _features(typed, node.input[0])
        if _LOWER[node.op_type](w, node, feats, elem):
            rebuilt.extend(w.nodes)
            out.graph.initializer.extend(w.consts)
            ops = ", ".join(dict.fromkeys(n.op_type for n in w.nodes if n.op_type != "Identity"))
            lowered.append(f"{ML_DOMAIN} {node.op_type} {node.name or node.output[0]!r} written as {ops}")
        else:
            rebuilt.append(node)
    if not lowered:
        return model
    del out.graph.node[:]
    out.graph.node.extend(rebuilt)
    if default is None:
        out.opset_import.append(helper.make_opsetid("", LOWERED_OPSET))
    if not any(n.domain == ML_DOMAIN for n in out.graph.node):
        keep = [o for o in out.opset_import if o.domain != ML_DOMAIN]
        del out.opset_import[:]
        out.opset_import.extend(keep)
    out.ir_version = max(
        int(out.ir_version), helper.find_min_ir_version_for(list(out.opset_import), ignore_unknown=True)
    )
    steps.extend(f"{line} (the target has no {ML_DOMAIN} kernels)" for line in lowered)
    return out
