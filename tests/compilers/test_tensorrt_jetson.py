"""Target tensorrt-jetson: the QDQ model TensorRT wants, the build spec, the op check, the
stand-in validation, and (with TensorRT and a GPU only) the engine build."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from agent.contracts.manifest import TensorSpec
from agent.runtimes import verify_bundle_dir
from agent.runtimes.tensorrt import TensorRTAdapter
from agent.runtimes.tensorrt_build import GpuIdentity, engine_key, timing_cache_name
from compilers import (
    CalibrationError,
    CompileOptions,
    CompileReport,
    TargetError,
    UnsupportedOpError,
    compile_model,
)
from compilers.tensorrt_jetson import WEIGHTED_OPS, TensorRTJetsonTarget, optimization_profile, workspace_mib
from device_profiles import load_profile
from tests.compilers.compiler_fixtures import ModelFiles, cnn_model, leftovers, write_model_files

TRT_MISSING = TensorRTAdapter.unavailable_reason()


@pytest.fixture(scope="module")
def nano_int8(digits: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> CompileReport:
    out = tmp_path_factory.mktemp("trt") / "nano"
    opts = CompileOptions(calibration=digits.calibration, validation=digits.validation, latency_runs=5)
    return compile_model(digits.model, "jetson-orin-nano", out, opts)


def test_int8_qdq_checked_with_onnxruntime(nano_int8: CompileReport) -> None:
    r = nano_int8
    assert (r.target, r.precision, r.manifest.runtime) == ("tensorrt-jetson", "int8", "tensorrt")
    assert r.top1_agreement is not None and r.top1_agreement >= 0.99
    assert r.size_ratio <= 0.3
    v = r.manifest.validation
    assert v is not None
    if TRT_MISSING:
        assert v.ran is False and v.checked_with and "onnxruntime" in v.checked_with
        assert r.latency_ms is None  # a stand-in's timing says nothing about the Jetson
        assert r.fit.within_latency_budget is None


def test_qdq_is_symmetric_int8_with_float_biases(nano_int8: CompileReport) -> None:
    model = onnx.load(nano_int8.out_dir / "model.onnx")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [v for k, v in inits.items() if k.endswith("zero_point")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    dq_inputs = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    assert all(inits[name].dtype == np.int8 for name in dq_inputs if name in inits)  # no INT32 bias DQ
    assert all(inits[b].dtype == np.float32 for b in inits if b.endswith(".bias"))
    assert {imp.domain for imp in model.opset_import} <= {"", "ai.onnx"}


def test_qdq_sit_on_the_inputs_of_weighted_layers_only(nano_int8: CompileReport) -> None:
    model = onnx.load(nano_int8.out_dir / "model.onnx")
    consumers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n.op_type)
    dq_outputs = [n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"]
    fed = {op for t in dq_outputs for op in consumers.get(t, [])}
    assert "Conv" in fed and ("Gemm" in fed or "MatMul" in fed)  # the digits CNN's layers are quantized
    assert fed <= set(WEIGHTED_OPS), f"Q/DQ in front of {sorted(fed - set(WEIGHTED_OPS))}"
    assert nano_int8.manifest.build["quantization"]["op_types"] == list(WEIGHTED_OPS)


def test_build_spec_for_orin_nano(nano_int8: CompileReport) -> None:
    m = verify_bundle_dir(nano_int8.out_dir)
    assert m.file("build_spec.json").role == "build-spec"
    spec = json.loads((nano_int8.out_dir / "build_spec.json").read_text())
    assert spec["flags"] == ["INT8", "FP16"] and spec["explicit_quantization"] is True
    assert spec["optimization_profiles"] == [
        {"input": {"min": [1, 1, 8, 8], "opt": [1, 1, 8, 8], "max": [8, 1, 8, 8]}}
    ]
    assert spec["dla"] is None  # the Orin Nano has no DLA
    assert spec["gpu"]["compute_capability"] == "8.7"
    assert spec["tensorrt_version"] == ">=8.6,<11"
    assert spec["workspace_mib"] == 1024
    assert "{gpu}" in spec["timing_cache"] and "{tensorrt_version}" in spec["timing_cache"]


def test_agx_orin_gets_a_dla_core_with_gpu_fallback(tiny: ModelFiles, tmp_path: Path) -> None:
    opts = CompileOptions(calibration=tiny.calibration, min_agreement=0.9, latency_runs=0)
    compile_model(tiny.model, "jetson-agx-orin", tmp_path / "agx", opts)
    spec = json.loads((tmp_path / "agx" / "build_spec.json").read_text())
    assert spec["dla"] == {"core": 0, "cores": 2, "gpu_fallback": True}
    assert spec["workspace_mib"] == 4096


def test_fp16_ships_the_fp32_onnx(tiny: ModelFiles, tmp_path: Path) -> None:
    opts = CompileOptions(precision="fp16", validation=tiny.validation, latency_runs=0)
    r = compile_model(tiny.model, "jetson-orin-nano", tmp_path / "b", opts)
    assert (tmp_path / "b" / "model.onnx").read_bytes() == tiny.model.read_bytes()
    assert json.loads((tmp_path / "b" / "build_spec.json").read_text())["flags"] == ["FP16"]
    assert r.top1_agreement == 1.0 and any("FP16 is applied by TensorRT" in n for n in r.notes)


def test_int8_without_calibration_asks_for_it(tiny: ModelFiles, tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="needs calibration data for INT8"):
        compile_model(
            tiny.model, "jetson-orin-nano", tmp_path / "b", CompileOptions(validation=tiny.validation)
        )
    assert leftovers(tmp_path, "b") == []


@pytest.mark.parametrize(
    ("op", "domain"), [("Unique", ""), ("TfIdfVectorizer", ""), ("MyPlugin", "com.acme")]
)
def test_unsupported_op_names_op_and_node(op: str, domain: str) -> None:
    node = helper.make_node(op, ["scores"], ["u"], name="the_node", domain=domain)
    opsets = ((domain, 1),) if domain else ()
    with pytest.raises(UnsupportedOpError) as err:
        TensorRTJetsonTarget().check_ops(cnn_model(extra_nodes=[node], opsets=opsets))
    assert op in str(err.value) and "'the_node'" in str(err.value) and "tensorrt-jetson" in str(err.value)


def test_optimization_profile_rules() -> None:
    fixed = TensorSpec("x", "float32", (1, 3, 8, 8))
    assert optimization_profile(fixed, 8, None) is None
    dyn = TensorSpec("x", "float32", (-1, 3, -1, -1))
    assert optimization_profile(dyn, 4, (100, 3, 32, 48)) == {
        "min": [1, 3, 32, 48],
        "opt": [1, 3, 32, 48],
        "max": [4, 3, 32, 48],
    }
    with pytest.raises(TargetError, match="dim 2 is dynamic"):
        optimization_profile(dyn, 4, None)


def test_workspace_is_bounded() -> None:
    assert workspace_mib(load_profile("jetson-orin-nano")) == 1024
    assert workspace_mib(load_profile("jetson-agx-orin")) == 4096


def test_engine_cache_key_and_timing_cache_name() -> None:
    gpu = GpuIdentity("Orin (nvgpu)", "8.7")
    spec = {
        "flags": ["INT8"],
        "timing_cache": "timing-{gpu}-sm{compute_capability}-trt{tensorrt_version}.cache",
    }
    key = engine_key("a" * 64, gpu, "10.3.0", spec)
    assert key != engine_key("b" * 64, gpu, "10.3.0", spec)
    assert key != engine_key("a" * 64, GpuIdentity("Orin (nvgpu)", "7.2"), "10.3.0", spec)
    assert key != engine_key("a" * 64, gpu, "8.6.2", spec)
    assert key != engine_key("a" * 64, gpu, "10.3.0", {**spec, "flags": ["FP16"]})
    assert timing_cache_name(spec, gpu, "10.3.0") == "timing-orin-nvgpu-sm87-trt10.3.0.cache"


def test_adapter_says_why_it_cannot_run() -> None:
    if TRT_MISSING is None:
        pytest.skip("TensorRT and a GPU are present")
    assert TRT_MISSING.startswith("tensorrt is not installed") or TRT_MISSING.startswith("no CUDA GPU")


@pytest.mark.slow
@pytest.mark.skipif(TRT_MISSING is not None, reason=f"engine build needs TensorRT and a GPU: {TRT_MISSING}")
def test_engine_builds_runs_and_is_cached(
    nano_int8: CompileReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.runtimes import load_bundle
    from agent.update.selftest import run_selftest

    monkeypatch.setenv("EDGEFLEET_TRT_CACHE", str(tmp_path / "cache"))
    adapter = load_bundle(nano_int8.out_dir, nano_int8.manifest)
    assert "passed" in run_selftest(adapter, nano_int8.out_dir, nano_int8.manifest)
    engines = list((tmp_path / "cache").glob("*.engine"))
    assert len(engines) == 1
    load_bundle(nano_int8.out_dir, nano_int8.manifest)  # second load reuses the engine
    assert list((tmp_path / "cache").glob("*.engine")) == engines


def test_fixed_batch_model_needs_no_optimization_profile(tmp_path: Path) -> None:
    files = write_model_files(tmp_path / "m", cnn_model(batch=1))
    opts = CompileOptions(
        calibration=files.calibration, validation=files.validation, min_agreement=0.9, latency_runs=0
    )
    r = compile_model(files.model, "jetson-orin-nano", tmp_path / "b", opts)
    assert r.manifest.inputs[0].shape == (1, 3, 8, 8) and r.validation_samples == 40
    assert json.loads((tmp_path / "b" / "build_spec.json").read_text())["optimization_profiles"] == []


def test_build_engine_says_why_it_cannot_build_here(tmp_path: Path) -> None:
    if TRT_MISSING is None:
        pytest.skip("TensorRT and a GPU are present")
    from agent.runtimes.base import RuntimeUnavailable
    from agent.runtimes.tensorrt_build import build_engine

    with pytest.raises(RuntimeUnavailable, match=r"tensorrt is not installed|no CUDA GPU"):
        build_engine(tmp_path / "model.onnx", {}, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_int8_of_a_model_without_weighted_layers_says_so(tmp_path: Path) -> None:
    # an element-wise model: nothing TensorRT would run in INT8
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 8])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Sigmoid", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "eltwise", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    src = tmp_path / "eltwise.onnx"
    onnx.save(model, src)
    cal = tmp_path / "cal.npz"
    np.savez(cal, x=np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32))
    opts = CompileOptions(precision="int8", calibration=cal, latency_runs=0, samples=0)
    with pytest.raises(TargetError, match=r"found nothing to quantize.*--precision fp16"):
        compile_model(src, "jetson-orin-nano", tmp_path / "b", opts)
    assert not (tmp_path / "b").exists()
    auto = compile_model(src, "jetson-orin-nano", tmp_path / "a", dataclasses.replace(opts, precision="auto"))
    assert auto.precision == "fp16" and any("nothing to quantize" in a for a in auto.attempts)
