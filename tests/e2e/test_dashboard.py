"""The dashboard in a real browser (headless Chromium): after a rollout it shows the deployment,
its state and per-state counts, and every device with its active model."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.e2e_kit import DIGITS, edgectl, ok

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("chromium is not installed (apt-get install chromium)")


def render(url: str, profile_dir: Path) -> str:
    """The page's DOM after its scripts ran (virtual time lets the polling fetches finish)."""
    res = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile_dir}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_dashboard_shows_the_rollout(make_fleet: Any, tmp_path: Path) -> None:
    fleet = make_fleet()
    fleet.add_agent("cam-01", "x86-64-avx2", {"site": "dash"})
    fleet.add_agent("cam-02", "x86-64-avx512-vnni", {"site": "dash"})
    url = fleet.url
    ok(
        edgectl(
            url,
            "models",
            "push",
            str(DIGITS / "digits_cnn.onnx"),
            "--name",
            "digits",
            "--version",
            "7",
            "--calibration",
            str(DIGITS / "calibration.npz"),
        )
    )
    ok(edgectl(url, "groups", "create", "lobby", "--selector", "site=dash"))
    ok(edgectl(url, "deploy", "digits:7", "--group", "lobby", "--wait", "--timeout", "300"))

    dom = render(f"{url}/dashboard", tmp_path / "chromium")
    for text in ("digits:7", "lobby", "SUCCEEDED", "HEALTHY 2", "cam-01", "cam-02", "x86-64-avx512-vnni"):
        assert text in dom, f"{text!r} not on the dashboard"
    assert dom.count("COMMITTED") >= 2
