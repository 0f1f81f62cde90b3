"""``profiles ls`` / ``profiles show``: built-in and user profiles, tables and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

Run = Callable[..., Result]
BOARD = """\
name: my-board
description: a board of our own
target: tflite-arm
precision: int8
cpu: {arch: aarch64, cores: 2}
memory_mb: 1024
runtime: {name: litert, version: ">=1.2"}
latency_budget_ms: 80
"""


def test_ls_lists_the_built_in_profiles(edgectl: Run) -> None:
    result = edgectl("profiles", "ls")
    assert result.exit_code == 0, result.output
    for name in ("raspberry-pi-5", "x86-64-avx2", "jetson-orin-nano"):
        assert name in result.stdout
    assert "built-in" in result.stdout and "tensorrt-jetson" in result.stdout


def test_ls_json_parses(edgectl: Run) -> None:
    result = edgectl("profiles", "ls", "-o", "json")
    assert result.exit_code == 0
    profiles = {p["name"]: p for p in json.loads(result.stdout)}
    assert profiles["x86-64-avx2"]["target"] == "onnx-x86"
    assert profiles["raspberry-pi-5"]["cpu"]["arch"] == "aarch64"
    assert result.stderr == ""


def test_global_output_flag_works_too(edgectl: Run) -> None:
    result = edgectl("-o", "json", "profiles", "show", "raspberry-pi-5")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["runtime"]["fallback"] == "tflite-runtime"


def test_show_a_profile(edgectl: Run) -> None:
    result = edgectl("profiles", "show", "jetson-orin-nano")
    assert result.exit_code == 0
    assert "tensorrt-jetson" in result.stdout and "compute" in result.stdout and "20 ms" in result.stdout


def test_show_unknown_profile_lists_known_ones(edgectl: Run) -> None:
    result = edgectl("profiles", "show", "toaster")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: unknown profile 'toaster' (known: arm64-generic, ")
    assert "x86-64-avx2" in result.stderr


def test_user_profile_dir_adds_and_overrides(edgectl: Run, tmp_path: Path) -> None:
    (tmp_path / "my-board.yaml").write_text(BOARD)
    (tmp_path / "x86-64-avx2.yaml").write_text(
        BOARD.replace("my-board", "x86-64-avx2")
        .replace("tflite-arm", "onnx-x86")
        .replace("litert", "onnxruntime")
        .replace("aarch64", "x86_64")
    )
    listed = edgectl("profiles", "ls", "--profiles-dir", tmp_path, "-o", "json")
    assert listed.exit_code == 0, listed.output
    profiles = {p["name"]: p for p in json.loads(listed.stdout)}
    assert profiles["my-board"]["memory_mb"] == 1024
    assert profiles["x86-64-avx2"]["memory_mb"] == 1024  # the user's file replaced the built-in one
    assert "raspberry-pi-5" in profiles

    table = edgectl("profiles", "ls", "--profiles-dir", tmp_path)
    assert profiles["my-board"]["source"] == str(tmp_path / "my-board.yaml")
    assert "my-board.yaml" in table.stdout  # FROM names the user's file (wrapped if long), not built-in
    shown = edgectl("profiles", "show", "my-board", "--profiles-dir", tmp_path)
    assert shown.exit_code == 0 and "a board of our own" in shown.stdout
    by_path = edgectl("profiles", "show", tmp_path / "my-board.yaml", "-o", "json")
    assert json.loads(by_path.stdout)["name"] == "my-board"


def test_profiles_dir_from_the_environment(edgectl: Run, tmp_path: Path) -> None:
    (tmp_path / "my-board.yaml").write_text(BOARD)
    result = edgectl("profiles", "show", "my-board", env={"EDGEFLEET_PROFILES_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output


def test_a_bad_user_profile_names_the_file_and_key(edgectl: Run, tmp_path: Path) -> None:
    (tmp_path / "my-board.yaml").write_text(BOARD + "colour: red\n")
    result = edgectl("profiles", "ls", "--profiles-dir", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'my-board.yaml'}: colour: unknown key")


def test_missing_profiles_dir_is_a_usage_error(edgectl: Run, tmp_path: Path) -> None:
    result = edgectl("profiles", "ls", "--profiles-dir", tmp_path / "nope")
    assert result.exit_code == 1
    assert "profile directory does not exist" in result.stderr
