"""Small ONNX models for the accuracy tests, built with ``onnx.helper``: one with a layer that
plain INT8 wrecks, a face-detector-shaped model with three outputs, and an embedding model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.compilers.compiler_fixtures import ModelFiles


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           weights: dict[str, np.ndarray], name: str) -> onnx.ModelProto:  # fmt: skip
    graph = helper.make_graph(
        nodes, name, inputs, outputs, [numpy_helper.from_array(a, n) for n, a in weights.items()]
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgefleet-tests"
    )
    model.ir_version = 8
    return model


def sensitive_model(d: int = 16, classes: int = 8, depth: int = 4, seed: int = 0) -> onnx.ModelProto:
    """``depth`` ordinary MatMul+Relu layers, then ``wide`` (one output channel 2000x the others:
    per-channel weights cope, a per-tensor activation range does not), then the classifier head
    ``sensitive``, whose weights cancel the wide channel so its scores rest on the small channels
    that INT8 rounds away. Plain INT8 loses the arg-max on most samples; keeping ``sensitive``
    (and, where the quantizer needs it, ``wide``) in float brings it back."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    nodes = []
    x = "x"
    for i in range(depth):
        weights[f"w{i}"] = (rng.normal(0, 1, (d, d)) / np.sqrt(d)).astype(np.float32)
        nodes += [
            helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"fc{i}"),
            helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        x = f"r{i}"
    wide = rng.normal(0, 1, (d, d)).astype(np.float32)
    wide[:, 0] *= 2000.0
    sens = rng.normal(0, 1, (d, classes)).astype(np.float32)
    sens[0, :] = 1e-4
    weights.update(wide=wide, sens=sens)
    nodes += [
        helper.make_node("MatMul", [x, "wide"], ["h_wide"], name="wide"),
        helper.make_node("MatMul", ["h_wide", "sens"], ["scores"], name="sensitive"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])],
        weights,
        "sensitive",
    )


def face_model(anchors: int = 32, seed: int = 0) -> onnx.ModelProto:
    """A face-detector-shaped net: Conv features → per-anchor box regression ``[N, A, 4]``,
    landmarks ``[N, A, 10]`` and face/not-face probabilities ``[N, A, 2]`` (softmax)."""
    rng = np.random.default_rng(seed)
    c = 8
    weights: dict[str, np.ndarray] = {
        "cw": rng.normal(0, 0.4, (c, 3, 3, 3)).astype(np.float32),
        "cb": rng.normal(0, 0.1, c).astype(np.float32),
        "shape": np.array([-1, c * 16], np.int64),
    }
    nodes = [
        helper.make_node(
            "Conv", ["image", "cw", "cb"], ["f"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]
        ),
        helper.make_node("Relu", ["f"], ["fr"], name="relu"),
        helper.make_node("Reshape", ["fr", "shape"], ["flat"], name="flatten"),
    ]
    outputs = []
    for name, k in (("boxes", 4), ("landmarks", 10), ("logits", 2)):
        weights[f"{name}_w"] = rng.normal(0, 0.3, (c * 16, anchors * k)).astype(np.float32)
        weights[f"{name}_shape"] = np.array([-1, anchors, k], np.int64)
        out = name if name != "logits" else "logits_r"
        nodes += [
            helper.make_node("MatMul", ["flat", f"{name}_w"], [f"{name}_m"], name=f"{name}_head"),
            helper.make_node("Reshape", [f"{name}_m", f"{name}_shape"], [out], name=f"{name}_reshape"),
        ]
    nodes.append(helper.make_node("Softmax", ["logits_r"], ["probs"], name="softmax", axis=-1))
    for name, k in (("boxes", 4), ("landmarks", 10), ("probs", 2)):
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", anchors, k]))
    return _model(
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        outputs,
        weights,
        "face",
    )


def embedding_model(d: int = 32, dim: int = 16, seed: int = 0) -> onnx.ModelProto:
    """Gemm → Relu → Gemm → L2 normalisation: unit-norm embeddings ``[N, dim]``, output named
    ``output`` so only its values say it is not class scores."""
    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.normal(0, 0.3, (d, 32)).astype(np.float32),
        "w2": rng.normal(0, 0.3, (32, dim)).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("MatMul", ["hr", "w2"], ["e"], name="fc2"),
        helper.make_node("LpNormalization", ["e"], ["output"], name="l2norm", axis=1, p=2),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", dim])],
        weights,
        "embedding",
    )


def write_files(
    root: Path, model: onnx.ModelProto, name: str, shape: tuple[int, ...], seed: int = 1
) -> ModelFiles:
    """The model with 96 calibration and 64 validation samples drawn for ``shape`` (one sample)."""
    root.mkdir(parents=True, exist_ok=True)
    files = ModelFiles(root / f"{name}.onnx", root / f"{name}_cal.npz", root / f"{name}_val.npz")
    onnx.save(model, files.model)
    rng = np.random.default_rng(seed)
    key = model.graph.input[0].name
    cal: dict[str, Any] = {key: rng.normal(0, 1, (96, *shape)).astype(np.float32)}
    val: dict[str, Any] = {key: rng.normal(0, 1, (64, *shape)).astype(np.float32)}
    np.savez(files.calibration, **cal)
    np.savez(files.validation, **val)
    return files
