"""Reading a bundle directory from disk: its manifest, checked against the files it lists.

The device reads every bundle it installs this way, and the compilers verify each bundle they
write with the same code, so a bundle that leaves the compiler is one the device accepts. The
contracts only parse and compare (:func:`agent.contracts.manifest.file_problems`); the file I/O
is here. Standard library only: the fleet server hashes files with :func:`sha256_file` too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from agent.contracts.errors import ContractError
from agent.contracts.manifest import MANIFEST_NAME, Manifest, file_problems


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The file's sha256 in lowercase hex. Raises ``OSError`` when it can't be read."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: Path) -> Manifest:
    """Parse ``root/manifest.json`` without looking at the other files.

    Raises :class:`ContractError` when it is missing or invalid."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ContractError(f"{root}: no {MANIFEST_NAME}")
    return Manifest.from_json(path.read_bytes())


def verify_bundle_dir(root: Path) -> Manifest:
    """Read ``root/manifest.json`` and check every listed file's size and sha256.

    Raises :class:`ContractError` with every mismatch when the bundle is not intact.
    """
    manifest = read_manifest(root)
    actual: dict[str, tuple[int, str] | None] = {}
    for f in manifest.files:
        p = root / f.path
        actual[f.path] = (p.stat().st_size, sha256_file(p)) if p.is_file() else None
    problems = file_problems(manifest, actual)
    if problems:
        raise ContractError(f"bundle {root} does not match its manifest: " + "; ".join(problems))
    return manifest
