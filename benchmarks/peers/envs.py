"""Create the peer servers' virtual environments on first use.

Each peer gets ``~/.cache/edgefleet/peers/<name>`` (``$EDGEFLEET_PEERS_DIR/<name>`` if set) with
its pins from :data:`PEERS`, plus the ONNX Runtime version that runs this script, so that every
row of the benchmark runs the same ORT build. An environment counts as made once its
``.complete`` stamp names the same requirements; a failed install leaves no stamp and is tried
again next time.

    python -m benchmarks.peers.envs            # make (or check) all of them
    python -m benchmarks.peers.envs kserve     # one
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

# Versions as named in the benchmark issue; mlserver 1.7.1 breaks with uvloop 0.23.
PEERS: dict[str, list[str]] = {
    "kserve": ["kserve==0.21.0"],
    # httptools too for MLServer (KServe pulls it in): uvicorn otherwise falls back to the slower h11.
    "mlserver": ["mlserver==1.7.1", "uvloop==0.21.0", "httptools"],
}


class PeerEnvError(RuntimeError):
    """A peer's environment could not be made; the message quotes pip's last lines."""


def peers_dir() -> Path:
    return Path(os.environ.get("EDGEFLEET_PEERS_DIR") or Path.home() / ".cache/edgefleet/peers")


def requirements(name: str) -> list[str]:
    """The pins for peer ``name``: its own plus this interpreter's onnxruntime and numpy major."""
    import numpy
    import onnxruntime

    return [
        *PEERS[name],
        f"onnxruntime=={onnxruntime.__version__}",
        f"numpy>={numpy.__version__.split('.')[0]}",
    ]


def python_of(name: str) -> Path:
    return peers_dir() / name / "bin" / "python"


def ensure(name: str, log: Path | None = None) -> Path:
    """The Python of peer ``name``'s venv, made first if needed (minutes). Raises
    :class:`PeerEnvError` when pip fails, ``KeyError`` for an unknown peer."""
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r} (known: {', '.join(PEERS)})")
    root = peers_dir() / name
    stamp = root / ".complete"
    reqs = requirements(name)
    if stamp.is_file() and json.loads(stamp.read_text()) == reqs:
        return python_of(name)
    root.parent.mkdir(parents=True, exist_ok=True)
    if not python_of(name).exists():
        # The base interpreter, not this venv's: venv.create from inside a venv does that itself.
        venv.create(root, with_pip=True, clear=True)
    log = log or root / "pip.log"
    with open(log, "w") as fh:
        proc = subprocess.run(
            [str(python_of(name)), "-m", "pip", "install", "--disable-pip-version-check", *reqs],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise PeerEnvError(f"pip install for {name} failed (log {log}):\n{tail}")
    stamp.write_text(json.dumps(reqs))
    return python_of(name)


def main(argv: list[str]) -> int:
    failed = 0
    for name in argv or list(PEERS):
        print(f"{name}: making {peers_dir() / name} (pip, may take minutes) ...", file=sys.stderr)
        try:
            print(f"{name}: {ensure(name)}", file=sys.stderr)
        except PeerEnvError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
