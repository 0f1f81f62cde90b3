"""How edgectl fails against a server: one error line on stderr, nothing on stdout, exit 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from typer.testing import Result

Run = Callable[..., Result]


def test_connection_refused_names_the_url_and_how_to_fix_it(edgectl: Run, free_url: str) -> None:
    result = edgectl("--server", free_url, "devices", "ls")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: cannot reach the fleet server at {free_url}: ")
    assert "start it with `fleet-server` or set --server" in lines[0]
    assert "Traceback" not in result.output


def test_connection_refused_through_the_installed_entry_point(free_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edgectl.main import run; run()",
            "-s",
            free_url,
            "-o",
            "json",
            "models",
            "ls",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: cannot reach the fleet server at {free_url}")
    assert "Traceback" not in done.stderr


def test_404_shows_the_servers_message(api: Run, fleet) -> None:
    result = api("devices", "show", "ghost")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "error: unknown device 'ghost' (HTTP 404, not_found)"


def test_404_in_json_mode_keeps_stdout_empty(api: Run, fleet) -> None:
    result = api("deployments", "status", "42", "-o", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "unknown deployment '42'" in result.stderr


def test_missing_token_says_how_to_pass_one(api: Run, fleet) -> None:
    fleet.token = "s3cret"
    result = api("models", "ls")
    assert result.exit_code == 1
    assert "missing or bad token (pass --token or set EDGEFLEET_TOKEN)" in result.stderr
    ok = api("--token", "s3cret", "models", "ls", "-o", "json")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == "[]"
    assert fleet.requests[-1][2] == "Bearer s3cret"


def test_an_answer_that_is_not_the_error_format_is_still_one_line(api: Run, fleet) -> None:
    fleet.broken = True
    result = api("groups", "ls")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: the fleet server answered GET /api/v1/groups with HTTP 500: Internal Server Error "
        "(HTTP 500, internal_server_error)"
    ]


def test_a_device_id_stays_in_its_path_segment(api: Run, fleet) -> None:
    result = api("devices", "show", "../groups")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: Not Found: GET /api/v1/devices/..%2Fgroups (HTTP 404, not_found)"
    assert [r for r in fleet.requests if r[1] == "/api/v1/groups"] == []
