"""The edgefleet wheel built from the working tree, and clean virtual environments that install it
the way a device would (``pip install 'edgefleet[agent]'``), for the packaging and aarch64 tests.

Building and installing go through pip exactly as a user's would; the packages come from the
registry (pip's cache makes a second run quick).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What a device must never pull in: the converter's and the server's libraries.
SERVER_ONLY = frozenset(
    {
        "tensorflow",
        "tensorflow-cpu",
        "tf-keras",
        "keras",
        "onnx",
        "onnx2tf",
        "onnxsim",
        "sqlalchemy",
        "alembic",
        "boto3",
        "botocore",
        "psycopg",
        "psycopg-binary",
        "amqtt",
        "python-multipart",
        "torch",
    }
)


def clean_env() -> dict[str, str]:
    """The environment without this venv's traces (PYTHONPATH would put the working tree first)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def build_wheel(out_dir: Path) -> Path:
    """``pip wheel --no-deps`` of the working tree into ``out_dir``; returns the wheel's path.
    The tree is copied first (tracked sources only matter), so a build leaves nothing behind in it."""
    src = out_dir / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".mypy_cache",
            ".ruff_cache",
            "tests",
            "benchmarks",
            "examples",
            "docs",
        ),
    )
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir), str(src)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=600,
    )
    if res.returncode != 0:
        raise AssertionError(f"pip wheel failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    wheels = sorted(out_dir.glob("edgefleet-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


class CleanVenv:
    """A new virtual environment with the wheel installed with ``extras``."""

    def __init__(self, path: Path, wheel: Path, extras: str) -> None:
        self.path = path
        venv.create(path, with_pip=True, clear=True)
        self.python = path / "bin" / "python"
        res = subprocess.run(
            [str(self.python), "-m", "pip", "install", "-q", f"edgefleet[{extras}] @ {wheel.as_uri()}"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=900,
        )
        if res.returncode != 0:
            raise AssertionError(f"pip install [{extras}] failed:\n{res.stderr[-3000:]}")

    def distributions(self) -> set[str]:
        res = subprocess.run(
            [str(self.python), "-m", "pip", "list", "--format", "json"],
            capture_output=True,
            text=True,
            env=clean_env(),
            check=True,
        )
        return {d["name"].lower().replace("_", "-") for d in json.loads(res.stdout)}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args],
            capture_output=True,
            text=True,
            env=clean_env(),
            cwd=self.path,  # not the working tree, so nothing imports from it
            timeout=timeout,
        )

    def script(self, name: str) -> Path:
        return self.path / "bin" / name

    def site_packages_bytes(self) -> int:
        (site,) = (self.path / "lib").glob("python3*/site-packages")
        return sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())
