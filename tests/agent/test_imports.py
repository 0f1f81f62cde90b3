"""A device installs only ``edgefleet[agent]``: the agent never imports compilers or server code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"
FORBIDDEN = ("compilers", "fleet_server", "edgectl")


def test_no_agent_module_imports_compilers_or_server_code() -> None:
    offenders = []
    for path in AGENT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(AGENT.parent)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN
            ]
    assert offenders == []


def test_starting_the_agent_loads_no_compiler_or_server_module() -> None:
    code = (
        "import sys, agent.cli, agent.daemon, agent.update, agent.serving, agent.mqtt_client;"
        "import agent.facts; agent.facts.device_facts(None);"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
