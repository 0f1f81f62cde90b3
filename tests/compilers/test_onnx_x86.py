"""Target onnx-x86: static INT8 (the acceptance figures on the example model), dynamic INT8,
FP16, FP32, and the op check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from agent.runtimes import load_bundle, verify_bundle_dir
from agent.update.selftest import compare_outputs
from compilers import CompileOptions, CompileReport, UnsupportedOpError, compile_model
from compilers.onnx_x86 import OnnxX86Target
from tests.compilers.compiler_fixtures import ModelFiles, cnn_model, leftovers


def fast(**kw: Any) -> CompileOptions:
    """Options with few timing runs on one thread (the host is shared)."""
    return CompileOptions(latency_runs=10, threads=1, **kw)


@pytest.fixture(scope="module")
def digits_int8(digits: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> CompileReport:
    out = tmp_path_factory.mktemp("x86") / "bundle"
    opts = fast(calibration=digits.calibration, validation=digits.validation)
    return compile_model(digits.model, "x86-64-avx2", out, opts)


def test_int8_static_meets_the_acceptance_figures(digits_int8: CompileReport) -> None:
    r = digits_int8
    assert (r.target, r.precision) == ("onnx-x86", "int8")
    assert r.size_ratio <= 0.3
    assert r.top1_agreement is not None and r.top1_agreement >= 0.99
    assert r.validation_samples == 360
    assert r.accuracy is not None and r.fp32_accuracy is not None and r.accuracy >= r.fp32_accuracy - 0.01
    assert r.latency_ms is not None and r.fp32_latency_ms is not None
    assert r.checked_with is None


def test_int8_model_is_qdq_per_channel(digits_int8: CompileReport) -> None:
    model = onnx.load(digits_int8.out_dir / "model.onnx")
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    scales = {i.name: i for i in model.graph.initializer if i.name.endswith("weight_scale")}
    assert scales and any(len(s.dims) == 1 and s.dims[0] > 1 for s in scales.values())  # per channel
    q = digits_int8.manifest.build["quantization"]
    assert q["format"] == "QDQ" and q["per_channel"] and q["reduce_range"]  # avx2 profile: no VNNI


def test_manifest_records_validation_and_verifies(digits_int8: CompileReport) -> None:
    m = verify_bundle_dir(digits_int8.out_dir)
    assert m == digits_int8.manifest
    assert (m.target, m.runtime, m.profile, m.source_file) == (
        "onnx-x86",
        "onnxruntime",
        "x86-64-avx2",
        "digits_cnn.onnx",
    )
    assert m.runtime_version == ">=1.16"
    assert (
        m.validation is not None
        and m.validation.ran
        and m.validation.top1_agreement == digits_int8.top1_agreement
    )
    assert m.validation.min_agreement == 0.99
    assert {f.role for f in m.files} == {"model", "samples"}
    assert m.created_at and m.created_at.endswith("Z") and m.compiler_version
    assert m.build["preflight"]["fits_memory"] is True
    assert [t.name for t in m.inputs] == ["input"] and m.inputs[0].shape == (-1, 1, 8, 8)


def test_selftest_passes_on_the_runtime_and_fails_a_wrong_model(
    digits: ModelFiles, digits_int8: CompileReport
) -> None:
    m = digits_int8.manifest
    assert m.selftest is not None and m.selftest.samples == 8 and m.selftest.check_top1
    arrays = dict(np.load(digits_int8.out_dir / m.selftest.file))
    inputs = {"input": arrays["input:input"]}
    expected = {"logits": arrays["output:logits"]}
    adapter = load_bundle(digits_int8.out_dir, m)
    assert compare_outputs(expected, adapter.infer(inputs), m.selftest) == []
    # A model of the same shape with a retrained (here: redrawn) last layer must fail.
    wrong = onnx.load(digits.model)
    rng = np.random.default_rng(0)
    for init in wrong.graph.initializer:
        if init.name == "classifier.3.weight":
            w = numpy_helper.to_array(init)
            init.CopyFrom(
                numpy_helper.from_array(rng.normal(0, w.std(), w.shape).astype(np.float32), init.name)
            )
    session = ort.InferenceSession(wrong.SerializeToString(), providers=["CPUExecutionProvider"])
    got = {"logits": session.run(None, inputs)[0]}
    assert compare_outputs(expected, got, m.selftest)


def test_image_folder_calibration(digits: ModelFiles, tmp_path: Path) -> None:
    folder = digits.model.parent / "images"
    if not (folder / "preprocess.yaml").is_file():
        pytest.skip("examples/digits/images is not there")
    said: list[str] = []
    r = compile_model(
        digits.model,
        "x86-64-avx2",
        tmp_path / "b",
        fast(calibration=folder, validation=digits.validation),
        said.append,
    )
    assert any(s.startswith("calibration data: 20 samples") for s in said)
    assert r.top1_agreement is not None and r.top1_agreement >= 0.99
    assert r.manifest.build["quantization"]["format"] == "QDQ"


def test_dynamic_int8_without_calibration_says_so(tiny: ModelFiles, tmp_path: Path) -> None:
    opts = fast(precision="int8", validation=tiny.validation, min_agreement=0.9)
    r = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", opts)
    assert r.manifest.build["quantization"]["format"] == "dynamic"
    assert any("dynamic INT8" in n for n in r.notes)
    ops = {n.op_type for n in onnx.load(tmp_path / "b" / "model.onnx").graph.node}
    assert ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}


def test_int8_slower_than_fp32_is_reported_with_vnni(
    tiny: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compilers.pipeline as pipeline

    monkeypatch.setattr(pipeline, "measure_latency", lambda *a, **k: (1.0, 2.5))
    monkeypatch.setattr(pipeline, "host_has_vnni", lambda: False)
    opts = fast(precision="int8", calibration=tiny.calibration, validation=tiny.validation)
    r = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", opts)
    assert r.latency_ratio == pytest.approx(2.5)
    assert any("2.50x slower than FP32" in n and "has no VNNI" in n for n in r.notes)


def test_fp16_keeps_fp32_io(tiny: ModelFiles, tmp_path: Path) -> None:
    opts = fast(precision="fp16", validation=tiny.validation)
    r = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", opts)
    model = onnx.load(tmp_path / "b" / "model.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert r.top1_agreement == 1.0 and r.max_abs_error < 1e-2
    assert r.size_ratio < 0.8


def test_fp32_is_optimised_and_exact(tiny: ModelFiles, tmp_path: Path) -> None:
    opts = fast(precision="fp32", validation=tiny.validation)
    r = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", opts)
    assert r.manifest.build["optimization"] == "ORT_ENABLE_EXTENDED"
    assert r.top1_agreement == 1.0 and r.max_abs_error < 1e-4


def test_op_without_cpu_kernel_names_op_and_node(tmp_path: Path) -> None:
    custom = helper.make_node("Frobnicate", ["scores"], ["odd"], name="my_custom_node", domain="com.example")
    model = cnn_model(extra_nodes=[custom], opsets=(("com.example", 1),))
    with pytest.raises(UnsupportedOpError) as err:
        OnnxX86Target().check_ops(model)
    assert "com.example.Frobnicate" in str(err.value) and "'my_custom_node'" in str(err.value)


def test_standard_and_contrib_ops_pass_the_check() -> None:
    gelu = helper.make_node("Gelu", ["scores"], ["g"], name="gelu", domain="com.microsoft")
    OnnxX86Target().check_ops(cnn_model(extra_nodes=[gelu], opsets=(("com.microsoft", 1),)))


def test_unsupported_op_leaves_no_output(tmp_path: Path) -> None:
    custom = helper.make_node("Frobnicate", ["scores"], ["odd"], name="n1", domain="com.example")
    model = cnn_model(extra_nodes=[custom], opsets=(("com.example", 1),))
    model.graph.output.append(helper.make_tensor_value_info("odd", onnx.TensorProto.FLOAT, ["batch", 4]))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(UnsupportedOpError):
        compile_model(path, "x86-64-avx2", tmp_path / "b", CompileOptions(precision="fp32"))
    assert leftovers(tmp_path, "b") == []


@pytest.mark.parametrize("host_vnni", [False, True])
def test_int8_for_a_vnni_device_on_a_host_without_vnni_is_checked_in_float(
    tiny: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_vnni: bool
) -> None:
    # Without VNNI this host's u8s8 kernels saturate where the device's don't: the bundle's Q/DQ
    # is computed in float (the exact integer result) and its latency is not taken for the device's.
    import compilers.onnx_x86 as x86

    monkeypatch.setattr(x86, "host_has_vnni", lambda: host_vnni)
    opts = fast(precision="int8", calibration=tiny.calibration, validation=tiny.validation)
    r = compile_model(tiny.model, "x86-64-avx512-vnni", tmp_path / "b", opts)
    assert r.manifest.build["quantization"]["reduce_range"] is False
    v = r.manifest.validation
    assert v is not None
    if host_vnni:
        assert v.ran is True and v.checked_with is None and v.latency_ms is not None
    else:
        assert v.ran is False and v.latency_ms is None
        assert (
            v.checked_with is not None and "Q/DQ in float" in v.checked_with and "no VNNI" in v.checked_with
        )
        assert r.fit is not None and "no VNNI" in r.fit.latency_note
