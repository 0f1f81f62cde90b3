"""Dynamic INT8: what ``auto`` tries after static INT8 and mixed precision failed, or where static
INT8 can't be made, and what ``--calibration-method Dynamic`` asks for directly. On onnx-x86 the
weights of the matrix products, recurrent cells and embeddings in 8 bits, their inputs quantized on
each run, convolutions in float; on tflite-arm the converter's dynamic-range quantization."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from agent.contracts.manifest import FileEntry, Manifest
from agent.runtimes import load_bundle, verify_bundle_dir
from compilers import CompileOptions, TargetError, ValidationGateError, compile_model, pipeline
from tests.compilers.accuracy_models import (
    conv_heavy_model,
    loudness_model,
    token_model,
    write_files,
    write_token_files,
)
from tests.compilers.compiler_fixtures import (
    ModelFiles,
    cnn_model,
    leftovers,
    require_tflite,
    write_model_files,
)

QUICK: dict[str, Any] = {"latency_runs": 0, "samples": 2}


@pytest.fixture(scope="module")
def loud(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return write_files(tmp_path_factory.mktemp("loud"), loudness_model(), "loud", (4, 8), decades=3.0)


def _opts(files: ModelFiles, **kw: Any) -> CompileOptions:
    return CompileOptions(
        calibration=files.calibration, validation=files.validation, metric="cosine", **{**QUICK, **kw}
    )


def _quantized_ops(bundle: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(bundle / "model.onnx")).graph.node}


def test_auto_ships_dynamic_int8_where_static_ranges_and_mixed_precision_fail(
    loud: ModelFiles, tmp_path: Path
) -> None:
    report = compile_model(loud.model, "x86-64-avx2", tmp_path / "b", _opts(loud, precision="auto"))
    assert report.precision == "int8" and report.calibration_method == "Dynamic"
    tried = [a.partition(":")[0] for a in report.attempts]
    assert tried[:3] == ["int8 (MinMax)", "int8 (Entropy)", "int8 (Percentile)"]
    assert any("layer(s) in float" in t for t in tried[3:]), tried  # mixed precision came first
    assert all("cosine similarity" in a for a in report.attempts)
    # The convolution is the layer with weights it leaves in float, and the record says why.
    assert report.mixed is not None and report.mixed.float_nodes == ("mix",)
    assert report.mixed.ranked_by.startswith("not ranked")
    assert (
        report.precision_choice is not None
        and "int8 (Dynamic) with 1 layer(s) in float" in report.precision_choice
    )
    assert any("dynamic INT8" in n and "7-bit" in n for n in report.notes)  # an AVX2 profile: no VNNI
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert manifest.validation is not None and manifest.validation.calibration_method == "Dynamic"
    quant = manifest.build["quantization"]
    assert quant["format"] == "dynamic" and quant["per_channel"] and quant["reduce_range"]
    ops = _quantized_ops(tmp_path / "b")
    assert "Conv" in ops and ops & {"DynamicQuantizeMatMul", "MatMulInteger"}, ops

    # Served by the agent's own adapter, the quiet stretch keeps its answers.
    adapter = load_bundle(tmp_path / "b", verify_bundle_dir(tmp_path / "b"))
    fp32 = ort.InferenceSession(str(loud.model), providers=["CPUExecutionProvider"])
    try:
        x = np.load(loud.validation)["x"][-8:]  # the quietest stretch: 1000x below the loudest
        got, want = adapter.infer({"x": x})["scores"], fp32.run(None, {"x": x})[0]
        cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
        assert cos.min() > 0.99, cos
    finally:
        adapter.close()


def test_dynamic_int8_that_leaves_most_weights_in_float_is_not_shipped(tmp_path: Path) -> None:
    files = write_files(tmp_path / "m", conv_heavy_model(), "conv", (64, 4, 4), decades=3.0)
    report = compile_model(files.model, "x86-64-avx2", tmp_path / "b", _opts(files, precision="auto"))
    assert report.precision in ("fp16", "fp32")
    dynamic = [a for a in report.attempts if a.startswith("int8 (Dynamic)")]
    assert len(dynamic) == 1 and "leaves most weights in float" in dynamic[0], report.attempts
    assert leftovers(tmp_path, "b") == ["b"]


def test_without_mixed_precision_auto_does_not_try_dynamic_int8(loud: ModelFiles, tmp_path: Path) -> None:
    report = compile_model(
        loud.model, "x86-64-avx2", tmp_path / "b", _opts(loud, precision="auto", mixed=False)
    )
    assert report.precision == "fp16"
    assert not any("Dynamic" in a for a in report.attempts)


def test_calibration_method_dynamic_needs_no_calibration_and_keeps_8_bits_for_vnni(
    loud: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compilers.onnx_x86 as onnx_x86

    monkeypatch.setattr(onnx_x86, "host_has_vnni", lambda: True)  # the host computes what the device will
    opts = CompileOptions(
        validation=loud.validation, metric="cosine", precision="int8", calibration_method="Dynamic", **QUICK
    )
    report = compile_model(loud.model, "x86-64-avx512-vnni", tmp_path / "b", opts)
    assert report.precision == "int8" and report.calibration_method == "Dynamic" and report.attempts == ()
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert manifest.build["quantization"]["reduce_range"] is False


def test_a_vnni_profile_built_on_a_host_without_vnni_gets_7_bit_weights(
    loud: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compilers.onnx_x86 as onnx_x86

    monkeypatch.setattr(onnx_x86, "host_has_vnni", lambda: False)
    opts = _opts(loud, precision="int8", calibration_method="Dynamic")
    report = compile_model(loud.model, "x86-64-avx512-vnni", tmp_path / "b", opts)
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert manifest.build["quantization"]["reduce_range"] is True
    assert any("this host's CPU has no VNNI" in n for n in report.notes)


def test_dynamic_int8_of_a_model_with_nothing_it_takes_fails_clearly(tmp_path: Path) -> None:
    # Conv -> Relu -> GlobalAveragePool -> Flatten: no layer but the convolution has weights.
    model = cnn_model()
    del model.graph.node[-1]
    model.graph.output[0].name = "f"
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 16
    files = write_model_files(tmp_path / "cnn", model)
    opts = CompileOptions(
        calibration=files.calibration,
        validation=files.validation,
        precision="int8",
        calibration_method="Dynamic",
        **QUICK,
    )
    with pytest.raises(TargetError, match="dynamic INT8 found nothing to quantize"):
        compile_model(files.model, "x86-64-avx2", tmp_path / "b", opts)
    assert leftovers(tmp_path, "b") == []


def test_other_targets_refuse_dynamic(loud: ModelFiles, tmp_path: Path) -> None:
    opts = _opts(loud, precision="int8", calibration_method="Dynamic")
    with pytest.raises(TargetError, match="can't calibrate with Dynamic"):
        compile_model(loud.model, "jetson-orin-nano", tmp_path / "b", opts)


def test_a_failing_dynamic_int8_names_its_figure(loud: ModelFiles, tmp_path: Path) -> None:
    opts = _opts(loud, precision="int8", calibration_method="Dynamic", metric_threshold=0.99999)
    with pytest.raises(ValidationGateError, match=r"cosine similarity 0\.99\d+ < 0\.99999"):
        compile_model(loud.model, "x86-64-avx2", tmp_path / "b", opts)


def test_on_x86_a_token_model_that_static_int8_takes_never_reaches_dynamic(tmp_path: Path) -> None:
    files = write_token_files(tmp_path / "m", token_model())
    opts = CompileOptions(
        calibration=files.calibration, validation=files.validation, precision="int8", **QUICK
    )
    report = compile_model(files.model, "x86-64-avx2", tmp_path / "b", opts)
    # Static INT8 of an embedding table and one MatMul passes here: dynamic is only the fallback.
    assert report.precision == "int8" and report.calibration_method == "MinMax"


@pytest.mark.slow
def test_tflite_integer_inputs_ship_dynamic_range_int8(tmp_path: Path) -> None:
    require_tflite()
    files = write_token_files(tmp_path / "m", token_model())
    opts = CompileOptions(
        calibration=files.calibration, validation=files.validation, precision="auto", **QUICK
    )
    report = compile_model(files.model, "raspberry-pi-5", tmp_path / "b", opts)
    assert report.precision == "int8" and report.calibration_method == "Dynamic"
    assert (
        report.attempts and "can't calibrate full-integer INT8 for integer input 'ids'" in report.attempts[0]
    )
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert manifest.build["quantization"].startswith("dynamic-range INT8")
    assert manifest.build["converted_from"].endswith("_dynamic_range_quant.tflite")
    assert manifest.inputs[0].dtype == "int64" and manifest.inputs[0].quantization is None
    assert report.size_bytes < 0.5 * manifest.build["fp32_tflite_size_bytes"]  # int8 weights
    adapter = load_bundle(tmp_path / "b", verify_bundle_dir(tmp_path / "b"))
    fp32 = ort.InferenceSession(str(files.model), providers=["CPUExecutionProvider"])
    try:
        ids = np.load(files.validation)["ids"][:4]
        got, want = adapter.infer({"ids": ids})["embedding"], fp32.run(None, {"ids": ids})[0]
        cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
        assert cos.min() > 0.99, cos
    finally:
        adapter.close()


@pytest.mark.slow
def test_tflite_auto_without_calibration_data_tries_dynamic_range_int8(tmp_path: Path) -> None:
    require_tflite()
    files = write_files(tmp_path / "m", conv_heavy_model(), "conv", (64, 4, 4))
    opts = CompileOptions(validation=files.validation, metric="cosine", precision="auto", **QUICK)
    report = compile_model(files.model, "raspberry-pi-5", tmp_path / "b", opts)
    assert report.precision == "int8" and report.calibration_method == "Dynamic"
    assert report.attempts[0].startswith("int8: INT8 for tflite-arm needs calibration data")


def _passed(tmp_path: Path, name: str, size: int, method: str, float_nodes: tuple[str, ...] = ()) -> Any:
    staging = tmp_path / name
    staging.mkdir()
    entry = FileEntry(path="model.onnx", sha256="0" * 64, size=size, role="model")
    attempt = pipeline._Attempt(
        precision="int8",
        staging=staging,
        out=cast(Any, None),
        files=(entry,),
        checked=cast(Any, None),
        calibration_method=method,
        float_nodes=float_nodes,
        failure=None,
    )
    return pipeline._Found(attempt)


def test_a_mixed_bundle_larger_than_dynamic_int8_is_not_shipped(tmp_path: Path) -> None:
    # A mixed bundle that needed many layers in float can hold more weights in float than dynamic
    # INT8 of the matrix products (MiniLM on x86: 0.42x against 0.25x): the smaller one ships.
    tries, log = pipeline._Tries(tmp_path), pipeline._Log()
    mixed = _passed(tmp_path, "mixed", 3_000, "MinMax", ("fc1", "fc2"))
    dynamic = _passed(tmp_path, "dynamic", 1_000, "Dynamic")
    assert pipeline._smaller(mixed, dynamic, tries, log) is dynamic
    assert log == [
        "int8 (MinMax) with 2 layer(s) in float also passed but is larger (3,000 B against 1,000 B): "
        "not shipped"
    ]
    assert not (tmp_path / "mixed").exists() and (tmp_path / "dynamic").exists()
    # a tie goes to the mixed bundle, and without a dynamic one the mixed one ships
    tie = _passed(tmp_path, "tie", 1_000, "Dynamic")
    assert pipeline._smaller(dynamic, tie, tries, pipeline._Log()) is dynamic
    assert pipeline._smaller(dynamic, None, tries, pipeline._Log()) is dynamic
