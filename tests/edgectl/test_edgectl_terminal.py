"""The displays drawn only on a terminal (spinner, upload bar, live rollout view), forced on with
FORCE_COLOR: they must work, stay on stderr, and leave ``-o json`` output parseable."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

Run = Callable[..., Result]
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
TTY = {"FORCE_COLOR": "1", "COLUMNS": "120"}


def test_upload_progress_reaches_the_total(api: Run, server_url: str, fleet) -> None:
    from edgectl.client import FleetClient

    model, cal = DIGITS / "digits_cnn.onnx", DIGITS / "calibration.npz"
    seen: list[tuple[int, int]] = []
    with FleetClient(server_url) as client:
        client.push_model(
            model, "d", "1", calibration=cal, progress=lambda done, total: seen.append((done, total))
        )
    total = model.stat().st_size + cal.stat().st_size
    assert seen[-1] == (total, total)
    assert all(b[0] >= a[0] for a, b in itertools.pairwise(seen))

    # The same upload drawn as a progress bar on a (forced) terminal; stdout stays pure JSON.
    result = api(
        "models", "push", model, "--name", "d", "--version", "1", "--calibration", cal, "-o", "json", env=TTY
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "d"


def test_live_rollout_view_on_a_terminal(api: Run, fleet) -> None:
    fleet.add_device("nuc-1")
    assert api("groups", "create", "lab", "-d", "nuc-1").exit_code == 0
    assert api("models", "push", DIGITS / "digits_cnn.onnx", "--name", "d", "--version", "1").exit_code == 0
    healthy = [{"device_id": "nuc-1", "state": "HEALTHY", "active": "d:1", "error": None, "updated_at": None}]
    fleet.script("1", {"state": "RUNNING"}, {"state": "SUCCEEDED", "devices": healthy})
    result = api("deploy", "d:1", "--group", "lab", "--wait", "--interval", "0.05", env=TTY)
    assert result.exit_code == 0, result.output
    assert "nuc-1" in result.stderr and "\x1b[" in result.stderr  # drawn, with styling, on stderr
    assert result.stdout == ""

    fleet.script("2", {"state": "SUCCEEDED", "devices": healthy})
    as_json = api("deploy", "d:1", "--group", "lab", "--wait", "--interval", "0.05", "-o", "json", env=TTY)
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["state"] == "SUCCEEDED"


def test_compile_spinner_on_a_terminal(edgectl: Run, tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = edgectl(
        "compile",
        DIGITS / "digits_cnn.onnx",
        "-p",
        "x86-64-avx2",
        "--precision",
        "fp32",
        "--out",
        out,
        "-o",
        "json",
        env=TTY,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["precision"] == "fp32"
    assert (out / "manifest.json").is_file()
