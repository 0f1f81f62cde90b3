"""Every way a compile can be refused: a one-line reason, the right error type, and no output
directory (nor staging leftovers). Also the gate, --force, and the progress messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import compilers.pipeline as pipeline
from compilers import (
    CalibrationError,
    CompileError,
    CompileOptions,
    ModelError,
    TargetError,
    UnsupportedOpError,
    ValidationGateError,
    compile_model,
)
from compilers.base import CompileJob, TargetOutput
from compilers.onnx_x86 import OnnxX86Target
from tests.compilers.compiler_fixtures import ModelFiles, cnn_model, leftovers

QUICK = {"latency_runs": 0}


def _refused(tmp_path: Path, error: type[CompileError], source: Path, profile: str, **opts: object) -> str:
    with pytest.raises(error) as err:
        compile_model(source, profile, tmp_path / "out", CompileOptions(**opts))  # type: ignore[arg-type]
    message = str(err.value)
    assert "\n" not in message and message
    assert leftovers(tmp_path, "out") == []
    return message


def test_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("definitely not protobuf \x00\xff")
    assert "is not an ONNX model" in _refused(tmp_path, ModelError, bad, "x86-64-avx2")


def test_missing_model_file(tmp_path: Path) -> None:
    msg = _refused(tmp_path, ModelError, tmp_path / "nope.onnx", "x86-64-avx2")
    assert "no such file" in msg


def test_a_model_quantized_already_is_refused_before_any_target(tiny: ModelFiles, tmp_path: Path) -> None:
    # an INT8 bundle's own model.onnx (static QDQ) brought back as a source
    compile_model(
        tiny.model,
        "x86-64-avx512-vnni",
        tmp_path / "b",
        CompileOptions(precision="int8", calibration=tiny.calibration, **QUICK),
    )  # type: ignore[arg-type]
    qdq = tmp_path / "b" / "model.onnx"
    for profile in ("x86-64-avx2", "jetson-orin-nano", "raspberry-pi-5"):
        msg = _refused(tmp_path, ModelError, qdq, profile, precision="auto", calibration=tiny.calibration)
        assert "is quantized already (" in msg and "DequantizeLinear" in msg
        assert msg.endswith("give the FP32 model it was made from; compile quantizes it for each target "
                            "and checks the result against it")  # fmt: skip


def test_unknown_profile_lists_known_ones(tiny: ModelFiles, tmp_path: Path) -> None:
    msg = _refused(tmp_path, TargetError, tiny.model, "raspberry-pi-9")
    assert "unknown profile 'raspberry-pi-9'" in msg and "x86-64-avx2" in msg and "jetson-orin-nano" in msg


def test_precision_the_target_cannot_make(tiny: ModelFiles, tmp_path: Path) -> None:
    assert "can't produce precision 'int4'" in _refused(
        tmp_path, TargetError, tiny.model, "x86-64-avx2", precision="int4"
    )


def test_unsupported_op_for_tensorrt(tmp_path: Path) -> None:
    node = helper.make_node("Unique", ["scores"], ["u"], name="dedupe")
    model = cnn_model(extra_nodes=[node])
    model.graph.output.append(helper.make_tensor_value_info("u", onnx.TensorProto.FLOAT, [-1]))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    msg = _refused(tmp_path, UnsupportedOpError, path, "jetson-orin-nano", precision="fp16")
    assert "op Unique" in msg and "'dedupe'" in msg


def test_calibration_shape_mismatch(tiny: ModelFiles, tmp_path: Path) -> None:
    cal = tmp_path / "cal.npz"
    np.savez(cal, image=np.zeros((10, 8, 8, 3), np.float32))  # NHWC for an NCHW model
    msg = _refused(tmp_path, CalibrationError, tiny.model, "x86-64-avx2", calibration=cal)
    assert "input 'image' expects shape [N, 3, 8, 8], got [10, 8, 8, 3]" in msg


def test_calibration_dtype_mismatch(tiny: ModelFiles, tmp_path: Path) -> None:
    cal = tmp_path / "cal.npy"
    np.save(cal, np.zeros((10, 3, 8, 8), np.float64))
    assert "expects dtype float32, got float64" in _refused(
        tmp_path, CalibrationError, tiny.model, "x86-64-avx2", calibration=cal
    )


def test_gate_trips_and_leaves_nothing(tiny: ModelFiles, tmp_path: Path) -> None:
    msg = _refused(
        tmp_path, ValidationGateError, tiny.model, "x86-64-avx2",
        calibration=tiny.calibration, validation=tiny.validation, min_agreement=1.01, **QUICK,
    )  # fmt: skip
    assert msg.startswith("top-1 agreement 1.000 < 1.01 on 40 samples")
    assert "refusing to emit a degraded model (lower --min-agreement to accept)" in msg


class _SabotagedTarget(OnnxX86Target):
    """Compiles normally, then scrambles the classifier head: a degraded model the gate must stop."""

    def compile(self, job: CompileJob, staging: Path) -> TargetOutput:
        out = super().compile(job, staging)
        model = onnx.load(staging / out.entrypoint)
        for init in model.graph.initializer:
            if init.name.startswith("fc"):
                w = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(np.roll(w, 1, axis=0), init.name))  # classes swapped
        onnx.save(model, staging / out.entrypoint)
        return out


def test_gate_stops_a_degraded_model(
    tiny: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "get_target", lambda name: _SabotagedTarget())
    msg = _refused(
        tmp_path, ValidationGateError, tiny.model, "x86-64-avx2",
        precision="fp32", validation=tiny.validation, **QUICK,
    )  # fmt: skip
    assert "< 0.99 on 40 samples" in msg


def test_converter_crash_is_a_toolchain_error(
    tiny: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compilers import ToolchainError, ort_tools

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("quantizer exploded\nwith a traceback-ish second line")

    monkeypatch.setattr(ort_tools, "pre_process", boom)
    msg = _refused(tmp_path, ToolchainError, tiny.model, "x86-64-avx2", calibration=tiny.calibration, **QUICK)
    assert "quantizer exploded with a traceback-ish second line" in msg


def test_existing_out_dir_needs_force(tiny: ModelFiles, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous bundle")
    with pytest.raises(CompileError, match="already exists; use --force"):
        compile_model(tiny.model, "x86-64-avx2", out, CompileOptions(precision="fp32", latency_runs=0))
    assert (out / "old.txt").read_text() == "previous bundle"
    compile_model(
        tiny.model, "x86-64-avx2", out, CompileOptions(precision="fp32", force=True, latency_runs=0)
    )
    assert not (out / "old.txt").exists() and (out / "manifest.json").is_file()
    assert leftovers(tmp_path, "out") == ["out"]


def test_failed_forced_compile_keeps_the_old_bundle(tiny: ModelFiles, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous bundle")
    opts = CompileOptions(
        validation=tiny.validation,
        calibration=tiny.calibration,
        min_agreement=1.01,
        force=True,
        latency_runs=0,
    )
    with pytest.raises(ValidationGateError):
        compile_model(tiny.model, "x86-64-avx2", out, opts)
    assert (out / "old.txt").read_text() == "previous bundle"
    assert leftovers(tmp_path, "out") == ["out"]


def test_progress_and_json_report(tiny: ModelFiles, tmp_path: Path) -> None:
    import json

    said: list[str] = []
    opts = CompileOptions(precision="fp32", calibration=tiny.calibration, latency_runs=0)
    report = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", opts, progress=said.append)
    assert said[0].startswith("checking") and any("validating against FP32" in s for s in said)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["target"] == "onnx-x86" and data["manifest"]["target"] == "onnx-x86"
    assert any("held out of calibration" in n for n in data["notes"])  # validated on the last 20%
    assert data["validation_samples"] == 10


def test_no_data_at_all_validates_on_random_inputs(tiny: ModelFiles, tmp_path: Path) -> None:
    report = compile_model(
        tiny.model, "x86-64-avx2", tmp_path / "b", CompileOptions(precision="fp32", latency_runs=0)
    )
    assert report.validation_samples == 64
    assert any("64 random inputs" in n for n in report.notes)


def test_bad_options_are_refused(tiny: ModelFiles, tmp_path: Path) -> None:
    _refused(tmp_path, CompileError, tiny.model, "x86-64-avx2", samples=-1)
    _refused(tmp_path, CompileError, tiny.model, "x86-64-avx2", min_agreement=-0.5)
