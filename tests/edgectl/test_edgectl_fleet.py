"""Models, devices and groups against a real HTTP server: tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

Run = Callable[..., Result]
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


def test_models_push_uploads_the_model_and_its_data(api: Run, fleet) -> None:
    model, cal = DIGITS / "digits_cnn.onnx", DIGITS / "calibration.npz"
    result = api(
        "models",
        "push",
        model,
        "--name",
        "digits",
        "--version",
        "1",
        "--calibration",
        cal,
        "--min-agreement",
        "0.98",
    )
    assert result.exit_code == 0, result.output
    assert "pushed digits:1" in result.stderr
    assert "digits:1" in result.stdout and "input float32[-1, 1, 8, 8]" in result.stdout
    assert fleet.uploads == [
        {
            "name": "digits",
            "version": "1",
            "size": model.stat().st_size,
            "calibration": cal.stat().st_size,
            "validation": None,
            "min_agreement": 0.98,
        }
    ]


def test_models_push_json_then_ls(api: Run, fleet) -> None:
    pushed = api(
        "models", "push", DIGITS / "digits_cnn.onnx", "--name", "digits", "--version", "2", "-o", "json"
    )
    assert pushed.exit_code == 0, pushed.output
    data = json.loads(pushed.stdout)
    assert (data["name"], data["version"], len(data["sha256"])) == ("digits", "2", 64)

    table = api("models", "ls")
    assert table.exit_code == 0
    assert "digits" in table.stdout and data["sha256"][:12] in table.stdout
    listed = json.loads(api("-o", "json", "models", "ls").stdout)
    assert [(m["name"], m["version"]) for m in listed] == [("digits", "2")]


def test_models_push_refusals(api: Run, fleet, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("not a model")
    refused = api("models", "push", bogus, "--name", "m", "--version", "1")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == "error: notes.onnx is not an ONNX model (HTTP 422, not_onnx)"

    assert api("models", "push", DIGITS / "digits_cnn.onnx", "--name", "m", "--version", "1").exit_code == 0
    other = tmp_path / "other.onnx"
    other.write_bytes((DIGITS / "digits_cnn.onnx").read_bytes() + b"\x00")
    conflict = api("models", "push", other, "--name", "m", "--version", "1")
    assert conflict.exit_code == 1
    assert "model m:1 exists with other bytes (HTTP 409, conflict)" in conflict.stderr


def test_models_push_missing_file_is_a_usage_error(api: Run, fleet, tmp_path: Path) -> None:
    result = api("models", "push", tmp_path / "nope.onnx", "--name", "m", "--version", "1")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert fleet.uploads == []


def test_devices_ls_show_and_group_filter(api: Run, fleet) -> None:
    fleet.add_device("nuc-1", labels={"site": "lab"})
    fleet.add_device(
        "pi5-kitchen",
        profile="raspberry-pi-5",
        online=False,
        error={"code": "HASH_MISMATCH", "message": "bytes differ"},
    )
    table = api("devices", "ls")
    assert table.exit_code == 0, table.output
    assert "nuc-1" in table.stdout and "pi5-kitchen" in table.stdout
    assert "offline" in table.stdout and "HASH_MISMATCH: bytes differ" in table.stdout

    assert api("groups", "create", "lab", "--selector", "site=lab").exit_code == 0
    only_lab = json.loads(api("devices", "ls", "--group", "lab", "-o", "json").stdout)
    assert [d["device_id"] for d in only_lab] == ["nuc-1"]
    assert ("GET", "/api/v1/devices", None) in fleet.requests

    shown = api("devices", "show", "pi5-kitchen")
    assert shown.exit_code == 0
    assert "raspberry-pi-5" in shown.stdout and "facts" in shown.stdout
    as_json = json.loads(api("-o", "json", "devices", "show", "pi5-kitchen").stdout)
    assert as_json["device_id"] == "pi5-kitchen" and as_json["facts"] == {"arch": "x86_64"}


def test_devices_ls_unknown_group(api: Run, fleet) -> None:
    result = api("devices", "ls", "--group", "nope")
    assert result.exit_code == 1
    assert "unknown group 'nope' (HTTP 404, not_found)" in result.stderr


def test_groups_create_and_ls(api: Run, fleet) -> None:
    fleet.add_device("nuc-1")
    fleet.add_device("nuc-2", labels={"board": "nuc", "site": "lab"})
    created = api(
        "groups",
        "create",
        "lab",
        "--device",
        "nuc-1",
        "--selector",
        "board=nuc",
        "-l",
        "site=lab",
        "-o",
        "json",
    )
    assert created.exit_code == 0, created.output
    group = json.loads(created.stdout)
    assert group == {
        "name": "lab",
        "devices": ["nuc-1"],
        "selector": {"board": "nuc", "site": "lab"},
        "members": ["nuc-1", "nuc-2"],
    }

    table = api("groups", "ls")
    assert table.exit_code == 0
    assert "board=nuc, site=lab" in table.stdout and "2: nuc-1, nuc-2" in table.stdout

    again = api("groups", "create", "lab")
    assert again.exit_code == 1 and "group 'lab' exists (HTTP 409, conflict)" in again.stderr


def test_groups_create_bad_selector_is_a_usage_error(api: Run, fleet) -> None:
    result = api("groups", "create", "lab", "--selector", "site")
    assert result.exit_code == 2
    assert "'site' is not LABEL=VALUE" in result.stderr
    assert fleet.groups == {}
