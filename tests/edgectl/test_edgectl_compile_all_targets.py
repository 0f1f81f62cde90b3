"""The compile issue's "done when", through the CLI as a user runs it: the digits example compiled
for raspberry-pi-5 (TFLite INT8), x86-64-avx2 (ONNX INT8) and jetson-orin-nano (INT8 QDQ ONNX +
TensorRT build spec) in one `edgectl compile`. Every manifest's hashes match its files; the
bundles that run here agree with FP32 on ≥ 99% of the held-out set; INT8 files are at most 0.3 of FP32."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from agent.runtimes import verify_bundle_dir

Run = Callable[..., Result]
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
PROFILES = {"raspberry-pi-5": "tflite-arm", "x86-64-avx2": "onnx-x86", "jetson-orin-nano": "tensorrt-jetson"}

pytestmark = pytest.mark.slow


@pytest.fixture
def tflite_toolchain() -> None:
    from compilers.toolchains import status

    if not status("tflite").installed:
        pytest.skip("tflite toolchain not installed: run `edgectl toolchains install tflite`")


def test_the_example_compiles_for_all_three_targets(
    edgectl: Run, tmp_path: Path, tflite_toolchain: None
) -> None:
    out = tmp_path / "bundles"
    args = [
        "-o",
        "json",
        "compile",
        DIGITS / "digits_cnn.onnx",
        "--calibration",
        DIGITS / "calibration.npz",
        "--validation",
        DIGITS / "heldout.npz",
        "--out",
        out,
    ]
    for p in PROFILES:
        args += ["--profile", p]
    result = edgectl(*args)
    assert result.exit_code == 0, result.output
    reports = {r["profile"]: r for r in json.loads(result.stdout)}
    assert set(reports) == set(PROFILES)
    fp32_size = (DIGITS / "digits_cnn.onnx").stat().st_size
    for profile, target in PROFILES.items():
        manifest = verify_bundle_dir(out / profile)  # every listed file's size and sha256
        assert manifest.target == target and manifest.precision == "int8"
        model_file = manifest.file(manifest.entrypoint)
        assert model_file.size <= 0.3 * fp32_size, (profile, model_file.size)
        v = manifest.validation
        assert v is not None and v.samples == 360
        assert v.top1_agreement is not None and v.top1_agreement >= 0.99, (profile, v.top1_agreement)
        assert v.ran is (target != "tensorrt-jetson")
    jetson = verify_bundle_dir(out / "jetson-orin-nano")
    roles = {f.role for f in jetson.files}
    assert "build-spec" in roles
    spec = json.loads(
        (
            out
            / "jetson-orin-nano"
            / jetson.file(next(f.path for f in jetson.files if f.role == "build-spec")).path
        ).read_text()
    )
    assert "int8" in json.dumps(spec).lower()
    tflite = verify_bundle_dir(out / "raspberry-pi-5")
    assert tflite.entrypoint.endswith(".tflite") and tflite.inputs[0].transpose == (0, 2, 3, 1)
