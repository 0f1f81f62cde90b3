"""The bundle on disk: a staging directory beside the destination, hashed file entries, the
manifest, and the atomic move into place.

Nothing appears at ``out_dir`` until the bundle is complete and verified: it is built in a hidden
temporary directory in the same parent (same filesystem, so the final ``rename`` is atomic) and
renamed into place. Replacing an existing bundle (``force``) first moves the old one aside, then
renames the new one in, then deletes the old one; if the second rename fails the old one is put
back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from agent.contracts.errors import ContractError
from agent.contracts.manifest import MANIFEST_NAME, FileEntry, Manifest
from agent.durable import atomic_write, fsync_dir
from agent.runtimes import sha256_file, verify_bundle_dir
from compilers.errors import CompileError


def check_destination(out_dir: Path, force: bool) -> None:
    """Raise :class:`CompileError` when ``out_dir`` exists and ``force`` is off, or exists and is
    not a directory (a file is never replaced by a bundle)."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise CompileError(f"{out_dir} exists and is not a directory; choose another output path")
    if out_dir.exists() and not force:
        raise CompileError(f"{out_dir} already exists; use --force to replace it")


def make_staging(out_dir: Path) -> Path:
    """A new empty hidden directory beside ``out_dir`` (its parent is created if needed)."""
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=parent))
    path.chmod(0o755)  # mkdtemp makes it private; the published bundle is an ordinary directory
    return path


def discard(path: Path) -> None:
    """Remove a staging directory; never raises (it runs while another error propagates)."""
    shutil.rmtree(path, ignore_errors=True)


def file_entries(root: Path, roles: dict[str, str]) -> tuple[FileEntry, ...]:
    """A :class:`FileEntry` (sha256, size, role) for each path in ``roles``, relative to ``root``."""
    return tuple(
        FileEntry(path=rel, sha256=sha256_file(root / rel), size=(root / rel).stat().st_size, role=role)
        for rel, role in roles.items()
    )


def write_manifest(root: Path, manifest: Manifest) -> Manifest:
    """Write ``manifest.json`` into ``root`` (atomically, after the bundle's files are synced),
    then read the bundle back with :func:`verify_bundle_dir`. Raises :class:`CompileError` if it
    does not verify."""
    for entry in manifest.files:  # the bundle's files must be on disk before anyone trusts it
        with open(root / entry.path, "rb") as fh:
            os.fsync(fh.fileno())
    atomic_write(root / MANIFEST_NAME, manifest.to_json().encode("utf-8"))  # syncs root too
    try:
        return verify_bundle_dir(root)
    except ContractError as exc:
        raise CompileError(f"the bundle failed its own verification: {exc}") from exc


def publish(staging: Path, out_dir: Path, force: bool) -> None:
    """Rename ``staging`` to ``out_dir``. With ``force`` an existing ``out_dir`` is replaced; if
    the swap fails the old bundle is restored. Raises :class:`CompileError`."""
    check_destination(out_dir, force)
    old: Path | None = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=staging.parent))
        os.rmdir(old)  # mkdtemp reserved a unique name; rename needs it free
        os.rename(out_dir, old)
    try:
        os.rename(staging, out_dir)
    except OSError as exc:
        if old is not None:
            os.rename(old, out_dir)
        raise CompileError(f"could not move the bundle into {out_dir}: {exc.strerror or exc}") from exc
    fsync_dir(out_dir.resolve().parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
