"""Tensors that hold infinities stay float in static INT8: PyTorch's attention with a
``key_padding_mask`` adds ``-inf`` to the scores of padded tokens before the Softmax. No INT8 scale
represents it (a MinMax scale of ``inf`` turned the scores, and all after them, into NaN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent.contracts.manifest import Manifest, TensorSpec
from compilers import CompileOptions, compile_model, ort_tools

RNG = np.random.default_rng(8)
TOKENS, WIDTH, CLASSES = 6, 8, 4


def masked_attention() -> onnx.ModelProto:
    """x [N, 6, 8], keep [N, 6] (1: a token, 0: padding) → scores x·Wq·xᵀ with -inf where keep is
    0 → Softmax → weighted mean of x → logits [N, 4]."""
    wq = RNG.normal(scale=0.5, size=(WIDTH, WIDTH)).astype(np.float32)
    head = RNG.normal(size=(WIDTH, CLASSES)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="query"),
        helper.make_node("Transpose", ["x"], ["xt"], name="keys", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "xt"], ["scores"], name="scores"),
        helper.make_node("Equal", ["keep", "zero"], ["padded"], name="is_padding"),
        helper.make_node("Where", ["padded", "minus_inf", "zero"], ["bias"], name="mask"),
        helper.make_node("Unsqueeze", ["bias", "one"], ["bias3"], name="per_query"),
        helper.make_node("Add", ["scores", "bias3"], ["masked"], name="masked_scores"),
        helper.make_node("Softmax", ["masked"], ["probs"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "x"], ["mixed"], name="attend"),
        helper.make_node("ReduceMean", ["mixed"], ["pooled"], name="pool", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "head"], ["logits"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "masked_attention",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", TOKENS, WIDTH]),
            helper.make_tensor_value_info("keep", TensorProto.FLOAT, ["N", TOKENS]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        [
            numpy_helper.from_array(wq, "wq"),
            numpy_helper.from_array(head, "head"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array(-np.inf, np.float32), "minus_inf"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def samples(n: int) -> dict[str, np.ndarray]:
    keep = np.ones((n, TOKENS), np.float32)
    for i in range(n):
        keep[i, RNG.integers(2, TOKENS) :] = 0.0  # every sample has padding
    return {"x": RNG.normal(size=(n, TOKENS, WIDTH)).astype(np.float32), "keep": keep}


def test_the_nodes_around_infinite_tensors_are_found(tmp_path: Path) -> None:
    onnx.save(masked_attention(), tmp_path / "m.onnx")
    specs = (
        TensorSpec(name="x", dtype="float32", shape=[-1, TOKENS, WIDTH]),
        TensorSpec(name="keep", dtype="float32", shape=[-1, TOKENS]),
    )
    found = ort_tools.non_finite_nodes(tmp_path / "m.onnx", samples(8), specs)
    # the mask, its reshape, the sum with the scores and the Softmax that reads it
    assert found == ("mask", "per_query", "masked_scores", "softmax")
    # a model without infinities has none
    finite = {**samples(8), "keep": np.ones((8, TOKENS), np.float32)}
    assert ort_tools.non_finite_nodes(tmp_path / "m.onnx", finite, specs) == ()


def test_int8_of_a_model_with_a_minus_inf_mask_keeps_it_float_and_passes(tmp_path: Path) -> None:
    onnx.save(masked_attention(), tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", **samples(64))
    np.savez(tmp_path / "val.npz", **samples(64))
    opts = CompileOptions(
        precision="int8",
        calibration=tmp_path / "cal.npz",
        validation=tmp_path / "val.npz",
        calibration_method="MinMax",
        mixed=False,
        latency_runs=0,
        samples=0,
    )
    report = compile_model(tmp_path / "m.onnx", "x86-64-avx512-vnni", tmp_path / "b", opts)
    assert report.precision == "int8"
    assert all(m.passed for m in report.metrics), report.metrics
    assert any("hold infinities" in n for n in report.notes), report.notes
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    kept = manifest.build["quantization"]["non_finite_nodes"]
    assert kept == ["mask", "per_query", "masked_scores", "softmax"]
    q = onnx.load(str(tmp_path / "b" / "model.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) > 0  # the rest is INT8


def test_float32s_lowest_value_counts_as_unbounded(tmp_path: Path) -> None:
    # HuggingFace fills its masks with finfo(float32).min: finite, but no calibrator can span it
    model = masked_attention()
    for init in model.graph.initializer:
        if init.name == "minus_inf":
            lowest = np.array(np.finfo(np.float32).min, np.float32)
            init.CopyFrom(numpy_helper.from_array(lowest, "minus_inf"))
    onnx.save(model, tmp_path / "m.onnx")
    specs = (
        TensorSpec(name="x", dtype="float32", shape=[-1, TOKENS, WIDTH]),
        TensorSpec(name="keep", dtype="float32", shape=[-1, TOKENS]),
    )
    found = ort_tools.non_finite_nodes(tmp_path / "m.onnx", samples(8), specs)
    assert found == ("mask", "per_query", "masked_scores", "softmax")
