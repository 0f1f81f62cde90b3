"""``precision="auto"``: the cheapest precision that passes the gate, never INT8 (or FP16)
measured slower than FP32 where this host runs the target's runtime; and whole compiles of
multi-output and embedding models gated output by output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.contracts.manifest import Manifest
from compilers import CompileOptions, TargetError, compile_model
from compilers.onnx_x86 import OnnxX86Target
from compilers.pipeline import choose_precision
from device_profiles import load_profile
from tests.compilers.accuracy_models import embedding_model, face_model, sensitive_model, write_files
from tests.compilers.compiler_fixtures import ModelFiles

QUICK: dict[str, Any] = {"latency_runs": 0, "samples": 2}


@pytest.fixture(scope="module")
def sens(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return write_files(tmp_path_factory.mktemp("sens"), sensitive_model(), "sens", (16,))


def _opts(files: ModelFiles, **kw: Any) -> CompileOptions:
    return CompileOptions(
        precision="auto", calibration=files.calibration, validation=files.validation, **{**QUICK, **kw}
    )


def test_auto_takes_int8_when_it_passes(tiny: ModelFiles, tmp_path: Path) -> None:
    report = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", _opts(tiny))
    assert report.precision == "int8" and report.mixed is None and report.attempts == ()
    assert report.calibration_method == "MinMax"
    assert report.precision_choice is not None and report.precision_choice.startswith(
        "auto chose int8 (MinMax)"
    )
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert manifest.precision == "int8"
    assert manifest.validation is not None and manifest.validation.precision_choice == report.precision_choice


def test_auto_takes_mixed_before_fp16(sens: ModelFiles, tmp_path: Path) -> None:
    report = compile_model(sens.model, "x86-64-avx2", tmp_path / "b", _opts(sens))
    assert report.precision == "int8" and report.mixed is not None
    assert report.precision_choice is not None and "with 2 layer(s) in float" in report.precision_choice
    assert "refused: int8 (MinMax): top-1 agreement" in report.precision_choice


def test_auto_without_mixed_falls_back_to_fp16(sens: ModelFiles, tmp_path: Path) -> None:
    report = compile_model(sens.model, "x86-64-avx2", tmp_path / "b", _opts(sens, mixed=False))
    assert report.precision == "fp16" and report.mixed is None and report.calibration_method is None
    assert [a.partition(":")[0] for a in report.attempts] == [
        "int8 (MinMax)",
        "int8 (Entropy)",
        "int8 (Percentile)",
    ]
    assert report.top1_agreement is not None and report.top1_agreement >= 0.99


def test_auto_never_ships_int8_slower_than_fp32(
    tiny: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compilers.pipeline as pipeline

    # This host's timings, fixed: every compiled model 2.5x slower than FP32.
    monkeypatch.setattr(pipeline, "measure_latency", lambda *a, **k: (1.0, 2.5))
    opts = _opts(tiny, latency_runs=5)
    report = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", opts)
    assert report.precision == "fp32"
    assert [a.partition(":")[0] for a in report.attempts] == ["int8 (MinMax)", "fp16"]
    assert all("passed the gate but ran 2.50x slower than FP32 on this host" in a for a in report.attempts)
    assert report.latency_ms == 2.5 and report.fp32_latency_ms == 1.0


def test_auto_ships_int8_within_the_timings_noise_of_fp32(
    tiny: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compilers.pipeline as pipeline

    # 1% slower is within what alternating medians move between attempts: not measurably slower.
    monkeypatch.setattr(pipeline, "measure_latency", lambda *a, **k: (1.0, 1.0 + pipeline.LATENCY_NOISE / 3))
    report = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", _opts(tiny, latency_runs=5))
    assert report.precision == "int8" and report.attempts == ()


def test_auto_for_tensorrt_without_calibration_skips_int8(tiny: ModelFiles, tmp_path: Path) -> None:
    opts = CompileOptions(precision="auto", validation=tiny.validation, **QUICK)
    report = compile_model(tiny.model, "jetson-orin-nano", tmp_path / "b", opts)
    assert report.precision == "fp16"
    assert report.attempts[0].startswith("int8: target tensorrt-jetson needs calibration data")


def test_entropy_calibration_on_request(tiny: ModelFiles, tmp_path: Path) -> None:
    opts = CompileOptions(calibration=tiny.calibration, calibration_method="Entropy", **QUICK)
    report = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", opts)
    assert report.calibration_method == "Entropy"
    assert report.manifest.build["quantization"]["calibration"] == "Entropy"


class _NoCalibrationChoice(OnnxX86Target):
    calibration_methods = ()


def test_a_calibration_method_the_target_lacks_is_refused() -> None:
    opts = CompileOptions(calibration_method="Percentile")
    with pytest.raises(TargetError, match=r"can't calibrate with Percentile \(it offers no choice"):
        choose_precision(_NoCalibrationChoice(), load_profile("x86-64-avx2"), opts)
    assert choose_precision(OnnxX86Target(), load_profile("x86-64-avx2"), opts) == "int8"


@pytest.mark.parametrize("profile", ["x86-64-avx2", "jetson-orin-nano"])
def test_face_model_is_gated_output_by_output(tmp_path: Path, profile: str) -> None:
    files = write_files(tmp_path / "m", face_model(), "face", (3, 8, 8))
    opts = CompileOptions(
        calibration=files.calibration, validation=files.validation, precision="int8", **QUICK
    )
    report = compile_model(files.model, profile, tmp_path / "b", opts)
    assert [(m.output, m.metric) for m in report.metrics] == [
        ("boxes", "cosine"),
        ("landmarks", "cosine"),
        ("probs", "cosine"),
    ]
    assert all(m.passed and m.value >= 0.99 for m in report.metrics)
    assert report.top1_agreement is None
    written = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert written.validation is not None and written.validation.metrics == report.metrics


def test_embedding_model_gated_by_cosine_and_a_stricter_sqnr_can_refuse(tmp_path: Path) -> None:
    files = write_files(tmp_path / "m", embedding_model(), "emb", (32,))
    opts = CompileOptions(
        calibration=files.calibration, validation=files.validation, precision="int8", **QUICK
    )
    report = compile_model(files.model, "x86-64-avx2", tmp_path / "b", opts)
    assert [(m.output, m.metric, m.passed) for m in report.metrics] == [("output", "cosine", True)]
    strict = CompileOptions(
        calibration=files.calibration, validation=files.validation, precision="auto",
        metric="sqnr", metric_threshold=80.0, **QUICK,
    )  # fmt: skip
    chosen = compile_model(files.model, "x86-64-avx2", tmp_path / "c", strict)
    # 80 dB is beyond INT8 and FP16 alike: only the FP32 bundle meets it
    assert chosen.precision == "fp32" and chosen.metrics[0].metric == "sqnr"


def test_auto_passes_over_a_precision_the_toolchain_cannot_make(
    tiny: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime's quantizer failing on a model (as it does on some public ones) is one more
    refusal for auto, which tries dynamic INT8 (no calibration) and goes on to FP16; asked for
    INT8 alone, the same failure ends the compile with its one-line message and nothing written."""
    from compilers import ToolchainError, onnx_x86

    real = OnnxX86Target.compile

    def failing_int8(self: OnnxX86Target, job: Any, staging: Path) -> Any:
        if job.precision == "int8":
            raise ToolchainError("static INT8 quantization failed: ValueError: injected")
        return real(self, job, staging)

    monkeypatch.setattr(onnx_x86.OnnxX86Target, "compile", failing_int8)
    report = compile_model(tiny.model, "x86-64-avx2", tmp_path / "b", _opts(tiny))
    assert report.precision == "fp16"
    assert "int8 (MinMax): static INT8 quantization failed" in (report.precision_choice or "")
    assert "int8 (Dynamic): static INT8 quantization failed" in (report.precision_choice or "")
    int8 = CompileOptions(precision="int8", calibration=tiny.calibration, validation=tiny.validation, **QUICK)
    with pytest.raises(ToolchainError, match="injected"):
        compile_model(tiny.model, "x86-64-avx2", tmp_path / "c", int8)
    assert not (tmp_path / "c").exists()
