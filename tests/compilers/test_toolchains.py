"""Managed converter environments: where they live, how their state reads, what a missing one
says, and (slow) that an install is all-or-nothing."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from compilers import toolchains
from compilers.errors import ToolchainError
from compilers.toolchains import ToolchainSpec

NOT_INSTALLED = "the tflite toolchain is not installed: run `edgectl toolchains install tflite`"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGEFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEFLEET_TFLITE_PYTHON", raising=False)
    return tmp_path / "home"


def fake_install(root: Path, packages: dict[str, str]) -> None:
    """A toolchain directory as install() leaves it, with this interpreter as its python."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").symlink_to(sys.executable)
    record = {"name": "tflite", "versions": {"onnx2tf": packages.get("onnx2tf", "?")}, "packages": packages}
    (root / toolchains.RECORD).write_text(json.dumps(record))


def test_home_and_dir(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert toolchains.home() == home
    assert toolchains.toolchain_dir("tflite") == home / "toolchains" / "tflite"
    monkeypatch.delenv("EDGEFLEET_HOME")
    assert toolchains.home() == Path.home() / ".cache" / "edgefleet"


def test_requirements_ship_with_the_package() -> None:
    reqs = toolchains.read_requirements(toolchains.spec("tflite"))
    assert "onnx2tf==1.29.24" in reqs


def test_not_installed(home: Path) -> None:
    st = toolchains.status("tflite")
    assert not st.installed and st.path == home / "toolchains" / "tflite" and st.versions == {}
    assert st.problem is not None and "edgectl toolchains install tflite" in st.problem
    with pytest.raises(ToolchainError) as err:
        toolchains.python_for("tflite")
    assert str(err.value) == NOT_INSTALLED


def test_unknown_name_lists_the_known_ones() -> None:
    for call in (toolchains.status, toolchains.python_for, toolchains.toolchain_dir, toolchains.install):
        with pytest.raises(ToolchainError, match=r"unknown toolchain 'tensorrt' \(known: tflite\)"):
            call("tensorrt")


def shipped_pins() -> dict[str, str]:
    """The exact pins of the shipped tflite requirements, as an installed package list."""
    lines = toolchains.read_requirements(toolchains.spec("tflite"))
    return dict(line.split("==", 1) for line in lines if "==" in line)


def test_installed_reads_the_record(home: Path) -> None:
    fake_install(home / "toolchains" / "tflite", {**shipped_pins(), "tensorflow": "2.19.0"})
    st = toolchains.status("tflite")
    assert st.installed and st.problem is None and st.versions == {"onnx2tf": "1.29.24"}
    assert toolchains.python_for("tflite") == home / "toolchains" / "tflite" / "bin" / "python"


def test_other_pins_are_a_problem_but_still_usable(home: Path) -> None:
    fake_install(home / "toolchains" / "tflite", {**shipped_pins(), "onnx2tf": "1.28.0"})
    st = toolchains.status("tflite")
    assert st.installed
    assert st.problem is not None and "onnx2tf 1.28.0 does not satisfy onnx2tf==1.29.24" in st.problem
    assert "install tflite --force" in st.problem
    assert toolchains.python_for("tflite").exists()


def test_directory_without_record_is_not_installed(home: Path) -> None:
    root = home / "toolchains" / "tflite"
    fake_install(root, {})
    (root / toolchains.RECORD).unlink()
    st = toolchains.status("tflite")
    assert not st.installed and st.problem is not None and "--force" in st.problem
    with pytest.raises(ToolchainError, match="not installed"):
        toolchains.python_for("tflite")


def test_python_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "python"
    monkeypatch.setenv("EDGEFLEET_TFLITE_PYTHON", str(missing))
    with pytest.raises(ToolchainError, match=r"EDGEFLEET_TFLITE_PYTHON=.* does not exist"):
        toolchains.python_for("tflite")
    assert not toolchains.status("tflite").installed

    # this interpreter exists but has no onnx2tf: usable as a path, reported as not installed
    monkeypatch.setenv("EDGEFLEET_TFLITE_PYTHON", sys.executable)
    assert toolchains.python_for("tflite") == Path(sys.executable)
    st = toolchains.status("tflite")
    assert st.external and st.path == Path(sys.executable)
    if not st.installed:
        assert st.problem is not None and "onnx2tf is not installed there" in st.problem
        assert "numpy" in st.versions


def test_pin_problems_is_pure() -> None:
    reqs = ["onnx2tf==1.29.24", "keras>=3,<4"]
    assert toolchains._pin_problems(reqs, {"onnx2tf": "1.29.24", "Keras": "3.15.1"}) == []
    assert toolchains._pin_problems(reqs, {"onnx2tf": "1.29.24"}) == ["keras is missing"]


@pytest.fixture
def offline_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ToolchainSpec:
    """A toolchain that needs nothing from an index: empty requirements, pip offline."""
    reqs = tmp_path / "offline.txt"
    reqs.write_text("# nothing to install\n")
    ts = ToolchainSpec("offline", reqs, "json", ("pip",), "a test toolchain", ("--no-index",))
    monkeypatch.setitem(toolchains.KNOWN, "offline", ts)
    return ts


@pytest.mark.slow
def test_install_is_all_or_nothing(home: Path, offline_spec: ToolchainSpec) -> None:
    lines: list[str] = []
    st = toolchains.install("offline", lines.append)
    link = home / "toolchains" / "offline"
    assert st.installed and st.problem is None and "pip" in st.versions
    assert link.is_symlink() and (link / toolchains.RECORD).is_file()
    assert toolchains.python_for("offline") == link / "bin" / "python"
    assert any("ready" in ln for ln in lines)
    first = link.resolve()

    lines.clear()
    toolchains.install("offline", lines.append)  # already there: nothing done
    assert link.resolve() == first and any("already installed" in ln for ln in lines)

    offline_spec.requirements.write_text("surely-not-a-package-edgefleet==1.0\n")
    with pytest.raises(ToolchainError, match=r"pip install failed.*surely-not-a-package-edgefleet"):
        toolchains.install("offline", lines.append, force=True)
    # the previous toolchain is untouched and the half-made one is gone
    assert link.resolve() == first
    assert sorted(p.name for p in (home / "toolchains").iterdir() if not p.name.startswith(".")) == [
        "offline",
        first.name,
    ]
    assert os.access(toolchains.python_for("offline"), os.X_OK)
