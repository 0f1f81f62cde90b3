"""Every command explains itself with an example, and ``edgectl --help`` stays light."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from typer.testing import Result

Run = Callable[..., Result]
COMMANDS = [
    ["compile"],
    ["profiles", "ls"],
    ["profiles", "show"],
    ["toolchains", "ls"],
    ["toolchains", "install"],
    ["models", "push"],
    ["models", "ls"],
    ["devices", "ls"],
    ["devices", "show"],
    ["groups", "create"],
    ["groups", "ls"],
    ["deploy"],
    ["deployments", "ls"],
    ["deployments", "status"],
    ["tokens", "create"],
    ["tokens", "ls"],
    ["tokens", "revoke"],
    ["audit", "ls"],
]
LISTINGS = [c for c in COMMANDS if c[-1] in ("ls", "show", "status")] + [["compile"], ["deploy"]]
HEAVY = ("onnx", "onnxruntime", "numpy", "compilers", "httpx", "yaml", "fleet_server", "tensorflow")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(edgectl: Run, command: list[str]) -> None:
    result = edgectl(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    assert f"edgectl {' '.join(command)} " in result.stdout


@pytest.mark.parametrize("command", LISTINGS, ids=" ".join)
def test_listing_and_show_commands_take_output(edgectl: Run, command: list[str]) -> None:
    assert "--output" in edgectl(*command, "--help").stdout


def test_root_help_lists_the_commands(edgectl: Run) -> None:
    result = edgectl("--help")
    assert result.exit_code == 0
    local = ("compile", "profiles", "toolchains")
    for name in (*local, "models", "devices", "groups", "deploy", "deployments", "tokens", "audit"):
        assert name in result.stdout


def test_no_arguments_shows_help(edgectl: Run) -> None:
    result = edgectl()
    assert "Usage" in result.output


def test_help_imports_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from edgectl.main import cli\n"
        "try:\n"
        "    cli(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_version(edgectl: Run) -> None:
    result = edgectl("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("edgectl ")
