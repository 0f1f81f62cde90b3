"""``edgectl compile`` on the committed digits example, and the ways its inputs can be wrong: each
must end with exit 1, one error line, no traceback and no output directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

Run = Callable[..., Result]
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
MODEL, CALIBRATION, HELDOUT = DIGITS / "digits_cnn.onnx", DIGITS / "calibration.npz", DIGITS / "heldout.npz"


def assert_one_line_failure(result: Result, *expected: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0]
    assert result.stdout == ""
    return errors[0]


def test_compile_digits_for_x86_avx2_int8(edgectl: Run, tmp_path: Path) -> None:
    out = tmp_path / "bundles"
    result = edgectl(
        "compile",
        MODEL,
        "--profile",
        "x86-64-avx2",
        "--calibration",
        CALIBRATION,
        "--validation",
        HELDOUT,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["target"], manifest["precision"], manifest["profile"]) == (
        "onnx-x86",
        "int8",
        "x86-64-avx2",
    )
    assert manifest["validation"]["top1_agreement"] >= 0.99
    for column in ("x86-64-avx2", "onnx-x86", "int8", "(0.2", "yes ("):
        assert column in result.stdout
    assert "%" in result.stdout  # agreement and accuracy figures
    assert f"x86-64-avx2: bundle in {out}" in result.stderr


def test_compile_json_for_two_profiles_goes_to_one_dir_each(edgectl: Run, tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = edgectl(
        "compile",
        MODEL,
        "-p",
        "x86-64-avx2",
        "-p",
        "x86-64-avx512-vnni",
        "--precision",
        "fp16",
        "--out",
        out,
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)  # stdout is the JSON alone
    assert [(r["profile"], r["precision"]) for r in reports] == [
        ("x86-64-avx2", "fp16"),
        ("x86-64-avx512-vnni", "fp16"),
    ]
    assert reports[0]["out_dir"] == str(out / "x86-64-avx2")
    assert (out / "x86-64-avx2" / "manifest.json").is_file()
    assert (out / "x86-64-avx512-vnni" / "manifest.json").is_file()
    assert "fit" in reports[0] and "size_ratio" in reports[0]


def test_compile_refuses_an_existing_bundle_unless_forced(edgectl: Run, tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = ("compile", MODEL, "-p", "x86-64-avx2", "--precision", "fp32", "--out", out)
    assert edgectl(*args).exit_code == 0
    again = edgectl(*args)
    assert_one_line_failure(again, str(out))
    assert edgectl(*args, "--force").exit_code == 0


def test_not_an_onnx_file(edgectl: Run, tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_text("hello, I am not a model\n")
    out = tmp_path / "out"
    result = edgectl("compile", bogus, "--profile", "x86-64-avx2", "--out", out)
    assert_one_line_failure(result, "is not an ONNX model")
    assert not out.exists()


def test_unknown_profile_lists_the_known_ones(edgectl: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = edgectl("compile", MODEL, "--profile", "x86-64-avx2", "--profile", "toaster", "--out", out)
    line = assert_one_line_failure(result, "unknown profile 'toaster'", "known:", "raspberry-pi-5")
    assert "x86-64-avx2" in line
    assert not out.exists()


def test_calibration_of_the_wrong_shape(edgectl: Run, tmp_path: Path) -> None:
    bad = tmp_path / "cal.npz"
    np.savez(bad, input=np.zeros((16, 1, 4, 4), dtype=np.float32))
    out = tmp_path / "out"
    result = edgectl("compile", MODEL, "--profile", "x86-64-avx2", "--calibration", bad, "--out", out)
    assert_one_line_failure(result, "calibration", "expects shape [N, 1, 8, 8], got [16, 1, 4, 4]")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]  # no staging directory left behind either


def test_missing_model_file_is_a_usage_error(edgectl: Run, tmp_path: Path) -> None:
    result = edgectl("compile", tmp_path / "nope.onnx", "--profile", "x86-64-avx2", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("agreement", ["1.5", "-0.1"])
def test_min_agreement_out_of_range_is_a_usage_error(edgectl: Run, tmp_path: Path, agreement: str) -> None:
    result = edgectl(
        "compile", MODEL, "-p", "x86-64-avx2", "--min-agreement", agreement, "--out", tmp_path / "o"
    )
    assert result.exit_code == 2
    assert not (tmp_path / "o").exists()


def test_several_profiles_one_failing_keeps_the_others(
    edgectl: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """raspberry-pi-5 needs the tflite toolchain, which an empty EdgeFleet home doesn't have."""
    monkeypatch.setenv("EDGEFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEFLEET_TFLITE_PYTHON", raising=False)
    out = tmp_path / "b"
    result = edgectl(
        "compile", MODEL, "-p", "x86-64-avx2", "-p", "raspberry-pi-5", "--precision", "fp32", "--out", out
    )
    assert result.exit_code == 1
    assert (out / "x86-64-avx2" / "manifest.json").is_file()
    assert not (out / "raspberry-pi-5").exists()
    assert "x86-64-avx2" in result.stdout  # the summary of what did compile
    assert (
        "raspberry-pi-5: the tflite toolchain is not installed: run `edgectl toolchains install tflite`"
        in (result.stderr)
    )
    assert (
        result.stderr.strip().splitlines()[-1] == "error: compile failed for 1 of 2 profiles (raspberry-pi-5)"
    )
