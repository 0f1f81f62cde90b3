"""Import boundaries between the parts.

- A device installs only ``edgefleet[agent]``: the agent never imports compilers or server code.
- The compilers use the agent's wire contracts (plug-in registries included) and the runtimes'
  public face (``agent.runtimes``' ``__init__``) and the shared durable write (``agent.durable``),
  never an adapter's module or other agent code.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agent"
COMPILERS = ROOT / "compilers"
FORBIDDEN = ("compilers", "fleet_server", "edgectl")
# What compilers/ may import from agent: the contracts (any module), the runtimes' package itself
# (public names only), the top package (for its __version__), and the one durable-write helper
# every part shares (agent.durable, standard library only).
COMPILERS_MAY_IMPORT = ("agent", "agent.runtimes")
COMPILERS_MAY_IMPORT_UNDER = ("agent.contracts", "agent.durable")


def imports(root: Path) -> Iterator[tuple[str, str, list[str]]]:
    """(file, module, names) for every absolute import in the ``.py`` files under ``root``;
    ``names`` are the names of a ``from module import ...``, empty for ``import module``."""
    for path in root.rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for a in node.names:
                    yield rel, a.name, []
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield rel, node.module, [a.name for a in node.names]


def test_no_agent_module_imports_compilers_or_server_code() -> None:
    offenders = [f"{f}: {m}" for f, m, _ in imports(AGENT) if m.split(".")[0] in FORBIDDEN]
    assert offenders == []


def compiler_offenders() -> list[str]:
    import agent.runtimes

    public = set(agent.runtimes.__all__)
    offenders = []
    for f, module, names in imports(COMPILERS):
        if module.split(".")[0] != "agent" or module.startswith(COMPILERS_MAY_IMPORT_UNDER):
            continue
        if module not in COMPILERS_MAY_IMPORT:
            offenders.append(f"{f}: {module}")
        elif module == "agent.runtimes":
            offenders += [f"{f}: agent.runtimes.{n} (not public)" for n in names if n not in public]
        elif names and names != ["__version__"]:
            offenders.append(f"{f}: agent.{', '.join(names)}")
    return offenders


def test_compilers_import_only_contracts_and_the_public_runtimes() -> None:
    assert compiler_offenders() == []


def test_the_compiler_rule_catches_a_reach_into_an_adapter(tmp_path: Path, monkeypatch) -> None:
    # The check above must be able to fail: a module reaching into an adapter is reported.
    fake = tmp_path / "compilers"
    fake.mkdir()
    (fake / "bad.py").write_text(
        "from agent.runtimes.onnxrt import OnnxRuntimeAdapter\n"
        "from agent.runtimes import tensors\n"
        "from agent.update import plan\n"
        "from agent.contracts.manifest import Manifest\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "COMPILERS", fake)
    assert compiler_offenders() == [
        "compilers/bad.py: agent.runtimes.onnxrt",
        "compilers/bad.py: agent.runtimes.tensors (not public)",
        "compilers/bad.py: agent.update",
    ]


def test_starting_the_agent_loads_no_compiler_or_server_module() -> None:
    code = (
        "import sys, agent.cli, agent.daemon, agent.update, agent.serving, agent.mqtt_client;"
        "import agent.facts; agent.facts.device_facts(None);"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_runtimes_public_face_and_the_contracts_import_nothing_heavy() -> None:
    # The fleet server hashes files through agent.runtimes and parses contracts at start-up.
    heavy = ("numpy", "onnxruntime", "tensorrt", "ai_edge_litert", "tflite_runtime")
    code = (
        f"import sys, agent.runtimes, agent.contracts;print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
