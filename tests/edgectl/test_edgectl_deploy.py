"""``deploy`` (with and without --wait) and ``deployments`` against a real HTTP server.

The stub's deployments move only as the test scripts them: each GET applies the next snapshot.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import Result

Run = Callable[..., Result]
MODEL = Path(__file__).resolve().parents[2] / "examples" / "digits" / "digits_cnn.onnx"
FAST = ("--interval", "0.05")


@pytest.fixture
def lab(api: Run, fleet: Any) -> Any:
    """Two devices in group ``lab`` and model digits:1 pushed."""
    fleet.add_device("nuc-1")
    fleet.add_device("nuc-2")
    assert api("groups", "create", "lab", "-d", "nuc-1", "-d", "nuc-2").exit_code == 0
    assert api("models", "push", MODEL, "--name", "digits", "--version", "1").exit_code == 0
    return fleet


def devices(*states: str, error: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "device_id": f"nuc-{i}",
            "state": s,
            "active": "digits:1" if s == "HEALTHY" else None,
            "error": error if s == "FAILED" else None,
            "updated_at": None,
        }
        for i, s in enumerate(states, start=1)
    ]


def test_deploy_without_wait_returns_the_accepted_deployment(api: Run, lab: Any) -> None:
    result = api("deploy", "digits:1", "--group", "lab")
    assert result.exit_code == 0, result.output
    assert "deployment 1: digits:1 → group lab (PENDING)" in result.stderr
    assert "edgectl rollouts status 1 --watch" in result.stderr

    as_json = api("deploy", "digits:1", "-g", "lab", "-o", "json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["id"] == "2"


def test_deploy_wait_follows_the_rollout_until_it_succeeds(api: Run, lab: Any) -> None:
    ready = [{"target": "onnx-x86", "precision": "int8", "status": "ready", "error": None}]
    lab.script(
        "1",
        {"state": "COMPILING"},
        {"state": "RUNNING", "compile": ready, "devices": devices("DOWNLOADING", "NOTIFIED")},
        {"devices": devices("HEALTHY", "INSTALLING")},
        {"state": "SUCCEEDED", "devices": devices("HEALTHY", "HEALTHY")},
    )
    result = api("deploy", "digits:1", "--group", "lab", "--wait", *FAST)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "deployment 1 SUCCEEDED: 2 HEALTHY" in result.stderr
    assert "nuc-1" in result.stderr and "onnx-x86" in result.stderr  # the last frame of the live view
    assert sum(1 for r in lab.requests if r[1] == "/api/v1/deployments/1") == 4


def test_deploy_wait_json_prints_only_the_final_deployment(api: Run, lab: Any) -> None:
    lab.script("1", {"state": "SUCCEEDED", "devices": devices("HEALTHY", "HEALTHY")})
    result = api("-o", "json", "deploy", "digits:1", "--group", "lab", "--wait", *FAST)
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["state"] == "SUCCEEDED" and final["counts"] == {"HEALTHY": 2}
    assert result.stderr == ""


def test_deploy_wait_follows_a_halt_to_its_roll_back_and_summarises(api: Run, lab: Any) -> None:
    """A failed device is the gate's to judge: the watch goes on until the server decides, here
    through HALTED (rolling back) to ROLLED_BACK."""
    bad = {"code": "SELF_TEST_FAILED", "message": "outputs differ from the bundle's expected outputs"}
    rolling = {"rollback": True, "wave": 1, "waves": 2, "wave_counts": [{"FAILED": 1, "NOTIFIED": 1}]}
    lab.script(
        "1",
        {"state": "RUNNING", "devices": devices("DOWNLOADING", "DOWNLOADING")},
        {"state": "RUNNING", "devices": devices("FAILED", "INSTALLING", error=bad)},
        {
            "state": "HALTED",
            "error": "gate failed",
            "rollout": rolling,
            "devices": devices("FAILED", "NOTIFIED", error=bad),
        },
        {
            "state": "ROLLED_BACK",
            "error": "gate failed in wave 1 of 2: 1 failed",
            "devices": devices("FAILED", "ROLLED_BACK", error=bad),
        },
    )
    result = api("deploy", "digits:1", "--group", "lab", "--wait", *FAST, "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["state"] == "ROLLED_BACK"
    assert (
        "device nuc-1: SELF_TEST_FAILED: outputs differ from the bundle's expected outputs" in result.stderr
    )
    assert result.stderr.strip().splitlines()[-1] == (
        "error: deployment 1 ROLLED_BACK: gate failed in wave 1 of 2: 1 failed (1 FAILED, 1 ROLLED_BACK)"
    )


def test_deploy_wait_reports_a_failed_compile(api: Run, lab: Any) -> None:
    failed = [{"target": "onnx-x86", "precision": "int8", "status": "failed", "error": "unsupported op Foo"}]
    lab.script("1", {"state": "FAILED", "error": "compile for onnx-x86 failed", "compile": failed})
    result = api("deploy", "digits:1", "--group", "lab", "--wait", *FAST)
    assert result.exit_code == 1
    assert "compile onnx-x86/int8: unsupported op Foo" in result.stderr
    assert "error: deployment 1 FAILED: compile for onnx-x86 failed" in result.stderr


def test_deploy_wait_times_out_with_its_own_exit_status(api: Run, lab: Any) -> None:
    lab.script("1", {"state": "RUNNING", "devices": devices("DOWNLOADING", "PENDING")})
    result = api("deploy", "digits:1", "--group", "lab", "--wait", "--timeout", "0.3", *FAST)
    assert result.exit_code == 3
    assert (
        "error: deployment 1 not decided after 0.3s (state RUNNING: 1 DOWNLOADING, 1 PENDING)"
        in result.stderr
    )


def test_deploy_refusals(api: Run, lab: Any) -> None:
    unknown = api("deploy", "digits:9", "--group", "lab")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == "error: unknown model 'digits:9' (HTTP 404, not_found)"
    malformed = api("deploy", "digits", "--group", "lab")
    assert malformed.exit_code == 2
    assert "'digits' is not NAME:VERSION" in malformed.stderr
    assert lab.deployments == {}


def test_deployments_ls_and_status(api: Run, lab: Any) -> None:
    assert api("deploy", "digits:1", "--group", "lab").exit_code == 0
    assert api("deploy", "digits:1", "--group", "lab").exit_code == 0
    listed = api("deployments", "ls")
    assert listed.exit_code == 0
    assert "digits:1" in listed.stdout and "2 PENDING" in listed.stdout
    ids = [d["id"] for d in json.loads(api("deployments", "ls", "-o", "json").stdout)]
    assert ids == ["2", "1"]

    lab.script("1", {"state": "RUNNING", "devices": devices("HEALTHY", "DOWNLOADING")})
    status = api("deployments", "status", "1")
    assert status.exit_code == 0
    assert "RUNNING" in status.stdout and "1 HEALTHY, 1 DOWNLOADING" in status.stdout
    as_json = json.loads(api("deployments", "status", "1", "-o", "json").stdout)
    assert [d["state"] for d in as_json["devices"]] == ["HEALTHY", "DOWNLOADING"]


def test_ctrl_c_while_waiting_says_the_rollout_goes_on(
    api: Run, lab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    module = sys.modules["edgectl.commands.deploy"]  # the package attribute is the command function
    monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=time.monotonic, sleep=interrupted))
    lab.script("1", {"state": "RUNNING", "devices": devices("DOWNLOADING", "PENDING")})
    result = api("deploy", "digits:1", "--group", "lab", "--wait")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == (
        "error: stopped watching; deployment 1 goes on (edgectl rollouts status 1 --watch)"
    )


def test_rollouts_status_watch_redraws_until_the_server_decides(api: Run, lab: Any) -> None:
    assert api("deploy", "digits:1", "--group", "lab").exit_code == 0
    lab.script(
        "1",
        {"state": "RUNNING", "devices": devices("DOWNLOADING", "NOTIFIED")},
        {"state": "RUNNING", "devices": devices("HEALTHY", "INSTALLING")},
        {"state": "SUCCEEDED", "devices": devices("HEALTHY", "HEALTHY")},
    )
    result = api("rollouts", "status", "1", "--watch", "--interval", "0.1", "-o", "json")
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["state"] == "SUCCEEDED" and {d["state"] for d in final["devices"]} == {"HEALTHY"}
