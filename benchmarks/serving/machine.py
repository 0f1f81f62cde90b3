"""The machine and software facts every serving benchmark result carries."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
OURS = (
    "onnxruntime",
    "numpy",
    "uvicorn",
    "uvloop",
    "httptools",
    "fastapi",
    "starlette",
    "grpcio",
    "protobuf",
)
PEER_PACKAGES = (
    "kserve",
    "mlserver",
    "onnxruntime",
    "numpy",
    "uvicorn",
    "uvloop",
    "httptools",
    "fastapi",
    "grpcio",
)


def cpu() -> dict[str, object]:
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_flags": {f: f in flags for f in FLAGS},
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions(packages: tuple[str, ...] = OURS) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def peer_versions(python: Path) -> dict[str, str | None]:
    """The same, asked of another venv's interpreter."""
    code = (
        "import json, importlib.metadata as m\n"
        "def v(p):\n"
        "    try: return m.version(p)\n"
        "    except m.PackageNotFoundError: return None\n"
        f"print(json.dumps({{p: v(p) for p in {list(PEER_PACKAGES)!r}}}))"
    )
    import json

    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-300:]}


def load_average() -> list[float] | None:
    """1/5/15-minute load: a figure taken on a busy machine says so here."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
