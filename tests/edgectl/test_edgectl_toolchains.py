"""``toolchains ls`` and the refusals of ``toolchains install``, in an empty EdgeFleet home
(nothing here downloads: a real install needs the package index and minutes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def empty_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("EDGEFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEFLEET_TFLITE_PYTHON", raising=False)
    return tmp_path / "home"


def test_ls_says_tflite_is_not_installed_and_how_to_install_it(edgectl: Run, empty_home: Path) -> None:
    result = edgectl("toolchains", "ls")
    assert result.exit_code == 0, result.output
    assert "tflite" in result.stdout and "no" in result.stdout
    assert "edgectl toolchains install tflite" in result.stdout

    data = json.loads(edgectl("toolchains", "ls", "-o", "json").stdout)
    assert data == [
        {
            "name": "tflite",
            "installed": False,
            "path": str(empty_home / "toolchains" / "tflite"),
            "versions": {},
            "problem": "not installed: run `edgectl toolchains install tflite`",
            "external": False,
        }
    ]


def test_ls_reports_an_override_interpreter_that_does_not_exist(
    edgectl: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDGEFLEET_TFLITE_PYTHON", str(tmp_path / "no-python"))
    data = json.loads(edgectl("toolchains", "ls", "-o", "json").stdout)
    assert data[0]["external"] is True and "is not an executable file" in data[0]["problem"]


def test_install_an_unknown_toolchain(edgectl: Run, empty_home: Path) -> None:
    result = edgectl("toolchains", "install", "caffe")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: unknown toolchain 'caffe' (known: tflite)"
    assert not (empty_home / "toolchains" / "caffe").exists()
