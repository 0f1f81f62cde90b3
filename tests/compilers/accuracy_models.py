"""Small ONNX models for the accuracy tests, built with ``onnx.helper``: one with a layer that
plain INT8 wrecks, a face-detector-shaped model with three outputs, an embedding model, and one
whose inputs' loudness spans decades."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compilers.batching import DEFAULT_BATCH
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


def loudness_model(
    channels: int = 4, width: int = 8, hidden: int = 64, classes: int = 8, seed: int = 0
) -> onnx.ModelProto:
    """Conv1d (kernel 1) → Flatten → MatMul → Relu → MatMul → Relu → Gemm, for inputs ``[N,
    channels, width]`` whose scale spans decades from sample to sample (:func:`write_files` with
    ``decades``), as a transformer's token states or an RNN's state do: one static range per
    tensor rounds the quiet samples to zero, which no layer kept in float alone mends (every layer
    sees the same spread); ranges measured on each run (dynamic INT8) keep them. Its outputs scale
    with the input, so a per-sample cosine is scale-free."""
    rng = np.random.default_rng(seed)
    flat = 2 * channels * width
    weights = {
        "wc": (rng.normal(0, 1, (2 * channels, channels, 1)) / np.sqrt(channels)).astype(np.float32),
        "w1": (rng.normal(0, 1, (flat, hidden)) / np.sqrt(flat)).astype(np.float32),
        "w2": (rng.normal(0, 1, (hidden, hidden)) / np.sqrt(hidden)).astype(np.float32),
        "w3": (rng.normal(0, 1, (hidden, classes)) / np.sqrt(hidden)).astype(np.float32),
        "b3": np.zeros(classes, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "wc"], ["c"], name="mix"),
        helper.make_node("Flatten", ["c"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "w1"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="fc2"),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
        helper.make_node("Gemm", ["r2", "w3", "b3"], ["scores"], name="head"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, width])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])],
        weights,
        "loudness",
    )


def conv_heavy_model(channels: int = 64, classes: int = 8, seed: int = 0) -> onnx.ModelProto:
    """Conv 3x3 (``channels`` to ``channels``) → GlobalAveragePool → Flatten → MatMul: nearly all
    its weights are the convolution's, which dynamic INT8 leaves in float."""
    rng = np.random.default_rng(seed)
    weights = {
        "wc": (rng.normal(0, 1, (channels, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32),
        "wh": (rng.normal(0, 1, (channels, classes)) / np.sqrt(channels)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "wc"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "wh"], ["scores"], name="head"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, 4, 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])],
        weights,
        "conv_heavy",
    )


def token_model(vocab: int = 200, tokens: int = 8, dim: int = 32, seed: int = 0) -> onnx.ModelProto:
    """Token ids ``[N, tokens]`` (int64) → embedding Gather → mean over tokens → MatMul → Tanh:
    a sentence-encoder-shaped model, ``embedding`` ``[N, dim]``, whose integer input full-integer
    TFLite INT8 can't calibrate."""
    rng = np.random.default_rng(seed)
    weights = {
        "table": rng.normal(0, 1, (vocab, dim)).astype(np.float32),
        "proj": (rng.normal(0, 1, (dim, dim)) / np.sqrt(dim)).astype(np.float32),
        "axes": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed", axis=0),
        helper.make_node("ReduceMean", ["emb", "axes"], ["pooled"], name="pool", keepdims=0),
        helper.make_node("MatMul", ["pooled", "proj"], ["h"], name="proj_fc"),
        helper.make_node("Tanh", ["h"], ["embedding"], name="tanh"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", tokens])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        weights,
        "tokens",
    )
    model.opset_import[0].version = 18  # ReduceMean takes its axes as an input from opset 18
    return model


def write_token_files(root: Path, model: onnx.ModelProto, vocab: int = 200, tokens: int = 8) -> ModelFiles:
    """``model`` with 64 calibration and 48 validation rows of random token ids."""
    root.mkdir(parents=True, exist_ok=True)
    files = ModelFiles(root / "tokens.onnx", root / "tokens_cal.npz", root / "tokens_val.npz")
    onnx.save(model, files.model)
    rng = np.random.default_rng(3)
    np.savez(files.calibration, ids=rng.integers(0, vocab, (64, tokens), dtype=np.int64))
    np.savez(files.validation, ids=rng.integers(0, vocab, (48, tokens), dtype=np.int64))
    return files


def write_files(
    root: Path, model: onnx.ModelProto, name: str, shape: tuple[int, ...], seed: int = 1, decades: float = 0.0
) -> ModelFiles:
    """The model with 96 calibration and 64 validation samples drawn for ``shape`` (one sample),
    standard normal. With ``decades``, the samples come in stretches of :data:`DEFAULT_BATCH` (the
    batch validation runs), as a stream's inputs do, each quieter than the one before, from 1 down
    to ``10 ** -decades``: a batch shares one loudness."""
    root.mkdir(parents=True, exist_ok=True)
    files = ModelFiles(root / f"{name}.onnx", root / f"{name}_cal.npz", root / f"{name}_val.npz")
    onnx.save(model, files.model)
    rng = np.random.default_rng(seed)
    key = model.graph.input[0].name

    def draw(n: int) -> np.ndarray:
        stretch = np.arange(n) // DEFAULT_BATCH
        scale = 10.0 ** (-decades * stretch / max(1, int(stretch[-1])))
        return (rng.normal(0, 1, (n, *shape)) * scale.reshape((n,) + (1,) * len(shape))).astype(np.float32)

    cal: dict[str, Any] = {key: draw(96)}
    val: dict[str, Any] = {key: draw(64)}
    np.savez(files.calibration, **cal)
    np.savez(files.validation, **val)
    return files
