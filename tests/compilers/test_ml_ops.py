"""scikit-learn's linear ai.onnx.ml ops written in default-domain ops: the same results as ONNX
Runtime's own kernels, and a compile for a target without those kernels that ships a bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from compilers import CompileOptions, TargetError, UnsupportedOpError, compile_model
from compilers.ml_ops import ML_DOMAIN, lower_ml_ops

RNG = np.random.default_rng(7)
FEATURES, CLASSES, ROWS = 4, 3, 64


def _model(
    nodes: list[onnx.NodeProto], outputs: list[onnx.ValueInfoProto], default_opset: int | None
) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, FEATURES])
    graph = helper.make_graph(nodes, "sk", [x], outputs)
    opsets = [helper.make_opsetid(ML_DOMAIN, 1)]
    if default_opset is not None:
        opsets.append(helper.make_opsetid("", default_opset))
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _classifier(transform: str, labels: list[int], name: str = "clf") -> onnx.NodeProto:
    return helper.make_node(
        "LinearClassifier",
        ["x"],
        ["label", "scores"],
        name=name,
        domain=ML_DOMAIN,
        classlabels_ints=labels,
        coefficients=RNG.normal(size=len(labels) * FEATURES).tolist(),
        intercepts=RNG.normal(size=len(labels)).tolist(),
        post_transform=transform,
    )


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in s.run(None, {"x": x})]


def _same(model: onnx.ModelProto) -> onnx.ModelProto:
    steps: list[str] = []
    lowered = lower_ml_ops(model, steps)
    assert lowered is not model and steps
    assert not any(n.domain == ML_DOMAIN for n in lowered.graph.node)
    assert all(o.domain != ML_DOMAIN for o in lowered.opset_import)
    onnx.checker.check_model(lowered)
    x = RNG.normal(size=(ROWS, FEATURES)).astype(np.float32) * 3
    for want, got in zip(_run(model, x), _run(lowered, x), strict=True):
        assert want.dtype == got.dtype and want.shape == got.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    return lowered


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX"])
@pytest.mark.parametrize("default_opset", [None, 13, 17])
def test_linear_classifier_as_onnx_runtime_computes_it(transform: str, default_opset: int | None) -> None:
    outs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, CLASSES]),
    ]
    _same(_model([_classifier(transform, [3, 5, 9])], outs, default_opset))


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
def test_a_pipeline_of_scaler_classifier_and_normalizer(norm: str) -> None:
    scaler = helper.make_node(
        "Scaler", ["x"], ["xs"], name="scale", domain=ML_DOMAIN,
        offset=RNG.normal(size=FEATURES).tolist(), scale=RNG.uniform(0.5, 2, FEATURES).tolist(),
    )  # fmt: skip
    clf = _classifier("LOGISTIC", [0, 1, 2])
    clf.input[0] = "xs"
    normalizer = helper.make_node(
        "Normalizer", ["scores"], ["probabilities"], name="norm", domain=ML_DOMAIN, norm=norm
    )
    outs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, CLASSES]),
    ]
    lowered = _same(_model([scaler, clf, normalizer], outs, None))
    assert {n.op_type for n in lowered.graph.node} >= {
        "Sub",
        "Mul",
        "MatMul",
        "Sigmoid",
        "ArgMax",
        "Gather",
        "Div",
    }


def test_linear_regressor() -> None:
    reg = helper.make_node(
        "LinearRegressor", ["x"], ["y"], name="reg", domain=ML_DOMAIN, targets=2,
        coefficients=RNG.normal(size=2 * FEATURES).tolist(), intercepts=[0.5, -1.0],
    )  # fmt: skip
    _same(_model([reg], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])], 17))


def test_what_it_cannot_write_the_same_way_stays() -> None:
    clf = helper.make_node(
        "LinearClassifier", ["x"], ["label", "scores"], name="clf", domain=ML_DOMAIN,
        classlabels_strings=["a", "b", "c"], coefficients=[0.0] * 12, post_transform="PROBIT",
    )  # fmt: skip
    outs = [
        helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, CLASSES]),
    ]
    model = _model([clf], outs, 17)
    steps: list[str] = []
    assert lower_ml_ops(model, steps) is model and steps == []


def _iris_like(tmp: Path) -> tuple[Path, Path]:
    clf = _classifier("LOGISTIC", [0, 1, 2])
    normalizer = helper.make_node("Normalizer", ["scores"], ["p"], name="norm", domain=ML_DOMAIN, norm="L1")
    zipmap = helper.make_node(
        "ZipMap", ["p"], ["probabilities"], domain=ML_DOMAIN, classlabels_int64s=[0, 1, 2]
    )
    out_type = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, None))
    )
    outs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        helper.make_value_info("probabilities", out_type),
    ]
    path = tmp / "iris.onnx"
    onnx.save(_model([clf, normalizer, zipmap], outs, None), path)
    data = tmp / "cal.npz"
    np.savez(data, x=RNG.normal(size=(40, FEATURES)).astype(np.float32))
    return path, data


def test_tensorrt_compile_of_a_scikit_learn_classifier(tmp_path: Path) -> None:
    source, data = _iris_like(tmp_path)
    out = tmp_path / "bundle"
    opts = CompileOptions(precision="fp32", calibration=data, validation=data, latency_runs=0)
    report = compile_model(source, "jetson-orin-nano", out, opts)
    manifest = json.loads((out / "manifest.json").read_text())
    steps = manifest["intake"]["steps"]
    assert any("LinearClassifier" in s and "MatMul" in s for s in steps), steps
    scores = {m["output"]: m for m in manifest["validation"]["metrics"]}
    assert scores["label"]["metric"] == "exact" and scores["label"]["value"] == 1.0
    assert scores["probabilities"]["passed"]
    assert report.precision == "fp32"


def test_without_lowering_the_target_names_the_ml_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from compilers import ml_ops

    monkeypatch.setattr(ml_ops, "_LOWER", {})
    source, data = _iris_like(tmp_path)
    out = tmp_path / "bundle"
    opts = CompileOptions(precision="fp32", calibration=data, validation=data, latency_runs=0)
    with pytest.raises(UnsupportedOpError, match=r"LinearClassifier.*node 'clf'"):
        compile_model(source, "jetson-orin-nano", out, opts)
    assert not out.exists()


def test_onnx_x86_names_precisions_that_would_change_nothing(tmp_path: Path) -> None:
    # ONNX Runtime runs scikit-learn's ops as they are: no INT8 form, kept FP32 by the FP16
    # converter. An "int8" or "fp16" bundle would be the FP32 model under another name.
    source, data = _iris_like(tmp_path)
    for precision, why in (("int8", "found nothing to quantize"), ("fp16", "converts nothing")):
        opts = CompileOptions(precision=precision, calibration=data, validation=data, latency_runs=0)
        with pytest.raises(TargetError, match=why):
            compile_model(source, "x86-64-avx512-vnni", tmp_path / precision, opts)
        assert not (tmp_path / precision).exists()
    opts = CompileOptions(precision="auto", calibration=data, validation=data, latency_runs=0)
    report = compile_model(source, "x86-64-avx512-vnni", tmp_path / "auto", opts)
    assert report.precision == "fp32"
    assert any("found nothing to quantize" in a for a in report.attempts), report.attempts
    assert any("FP16 for onnx-x86 converts nothing" in a and "LinearClassifier" in a for a in report.attempts)
