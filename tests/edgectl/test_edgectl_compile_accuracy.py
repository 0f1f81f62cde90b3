"""``edgectl compile`` with the accuracy options: ``--precision auto``, ``--metric``,
``--metric-threshold``, ``--calibration-method``, ``--no-mixed``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

from tests.compilers.accuracy_models import face_model, sensitive_model, write_files

Run = Callable[..., Result]


def test_auto_with_a_sensitive_layer_ships_mixed_int8(edgectl: Run, tmp_path: Path) -> None:
    files = write_files(tmp_path / "m", sensitive_model(), "sens", (16,))
    out = tmp_path / "b"
    result = edgectl(
        "compile", files.model, "-p", "jetson-orin-nano", "--precision", "auto",
        "--calibration", files.calibration, "--validation", files.validation, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    validation = json.loads((out / "manifest.json").read_text())["validation"]
    assert validation["mixed"]["float_nodes"][0] == "sensitive"
    assert validation["precision_choice"].startswith("auto chose int8 (MinMax) with")
    assert "gate: scores top1 1 (ok, >= 0.99)" in result.stdout
    assert "auto chose int8" in result.stdout


def test_metric_and_calibration_method_reach_the_manifest(edgectl: Run, tmp_path: Path) -> None:
    files = write_files(tmp_path / "m", face_model(), "face", (3, 8, 8))
    out = tmp_path / "b"
    result = edgectl(
        "compile", files.model, "-p", "x86-64-avx2", "--precision", "int8", "--metric", "sqnr",
        "--metric-threshold", "15", "--calibration-method", "Percentile",
        "--calibration", files.calibration, "--validation", files.validation, "--out", out, "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)[0]
    assert [(m["output"], m["metric"], m["threshold"]) for m in report["metrics"]] == [
        ("boxes", "sqnr", 15.0),
        ("landmarks", "sqnr", 15.0),
        ("probs", "sqnr", 15.0),
    ]
    assert report["calibration_method"] == "Percentile"
    validation = json.loads((out / "manifest.json").read_text())["validation"]
    assert validation["calibration_method"] == "Percentile" and len(validation["metrics"]) == 3


def test_an_unmet_metric_threshold_fails_in_one_line(edgectl: Run, tmp_path: Path) -> None:
    files = write_files(tmp_path / "m", face_model(), "face", (3, 8, 8))
    result = edgectl(
        "compile", files.model, "-p", "x86-64-avx2", "--precision", "int8", "--metric", "cosine",
        "--metric-threshold", "1.01", "--no-mixed", "--calibration", files.calibration,
        "--out", tmp_path / "b",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cosine similarity" in errors[0] and "< 1.01" in errors[0]
    assert "lower --metric-threshold to accept" in errors[0]
    assert not (tmp_path / "b").exists()


def test_metric_threshold_without_metric_is_refused(edgectl: Run, tmp_path: Path) -> None:
    files = write_files(tmp_path / "m", face_model(), "face", (3, 8, 8))
    result = edgectl("compile", files.model, "-p", "x86-64-avx2", "--metric-threshold", "0.5")
    assert result.exit_code == 1 and "--metric-threshold needs --metric" in result.stderr
