"""A bundle directory as one uncompressed tar, ``manifest.json`` first (so a reader can check the
manifest before it has the model), the other files after it in sorted order. The tar is
reproducible: same directory, same bytes (fixed owner, mode and mtime), so its sha256 names it.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from agent.runtimes import sha256_file

MANIFEST = "manifest.json"


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = path.stat().st_size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(path, "rb") as fh:
        tar.addfile(info, fh)


def write_bundle_tar(bundle_dir: Path, out: Path) -> None:
    """Tar the files under ``bundle_dir`` into ``out``. Raises ``ValueError`` when there is no
    ``manifest.json`` or a symlink (a bundle holds plain files only)."""
    if not (bundle_dir / MANIFEST).is_file():
        raise ValueError(f"{bundle_dir}: no {MANIFEST}")
    files = []
    for p in sorted(bundle_dir.rglob("*")):
        if p.is_symlink():
            raise ValueError(f"{p}: a bundle holds no symlinks")
        if p.is_file():
            rel = p.relative_to(bundle_dir).as_posix()
            if rel != MANIFEST:
                files.append((p, rel))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, bundle_dir / MANIFEST, MANIFEST)
        for p, rel in files:
            _add(tar, p, rel)


sha256_of = sha256_file  # one sha256 of a file for the whole project


def bundle_target_path(name: str, version: str, target: str, precision: str, sha256: str) -> str:
    """``{model}/{version}/{target}-{precision}-{sha8}.tar`` (docs/api.md)."""
    return f"{name}/{version}/{target}-{precision}-{sha256[:8]}.tar"
