"""A/B slots: two directories, one holding the serving model, the other the next one.

An install clears the *inactive* slot, extracts the bundle tar into it and checks every file
against the manifest; the active slot is never touched, so whatever happens during an install,
the serving model's files stay intact. Which slot is active is recorded in the journal, and it
changes only after the new model passed its self-test.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.contracts.errors import ContractError
from agent.contracts.manifest import MANIFEST_NAME, Manifest
from agent.contracts.state import ErrorCode
from agent.durable import fsync_dir
from agent.errors import ArtifactError, DeviceError
from agent.runtimes.bundle_dir import verify_bundle_dir

SLOT_NAMES = ("a", "b")


@dataclass(frozen=True)
class Installed:
    bundle_dir: Path
    manifest: Manifest


class SlotStore:
    """The two slots under ``root`` (``<data_dir>/slots``).

    ``max_unpacked_bytes`` bounds what one bundle may unpack to; a tar that claims more is refused
    before anything is written.
    """

    def __init__(self, root: Path, max_unpacked_bytes: int = 8 << 30) -> None:
        self.root = root
        self.max_unpacked_bytes = max_unpacked_bytes

    def path(self, slot: str) -> Path:
        if slot not in SLOT_NAMES:
            raise ValueError(f"unknown slot {slot!r} (slots: {', '.join(SLOT_NAMES)})")
        return self.root / slot

    @staticmethod
    def inactive(active: str | None) -> str:
        """The slot an install goes to, given the active one (``a`` when none is active)."""
        return "b" if active == "a" else "a"

    def clear(self, slot: str) -> None:
        path = self.path(slot)
        if path.exists():
            shutil.rmtree(path)

    def bundle_dir(self, slot: str) -> Path:
        """The bundle's root inside ``slot``: the slot itself, or the one directory a tar made of a
        bundle directory unpacks to."""
        path = self.path(slot)
        if (path / MANIFEST_NAME).is_file():
            return path
        subdirs = [p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []
        if len(subdirs) == 1 and (subdirs[0] / MANIFEST_NAME).is_file():
            return subdirs[0]
        raise ArtifactError(f"slot {slot}: no {MANIFEST_NAME} in the bundle", ErrorCode.BUNDLE_INVALID)

    def verify(self, slot: str) -> Installed:
        """Check the bundle in ``slot`` against its manifest. Raises :class:`ArtifactError`."""
        root = self.bundle_dir(slot)
        try:
            return Installed(root, verify_bundle_dir(root))
        except ContractError as exc:
            raise ArtifactError(str(exc), ErrorCode.BUNDLE_INVALID) from exc

    def install(self, tar_path: Path, slot: str) -> Installed:
        """Clear ``slot``, unpack the bundle tar into it and verify every file.

        Raises :class:`ArtifactError` (``BUNDLE_INVALID``) for a tar that is unreadable, holds an
        absolute path, a ``..``, a link, a device file, or more than ``max_unpacked_bytes``, or
        whose files don't match the manifest; :class:`DeviceError` (``DISK_FULL``) when the disk
        fills up. On failure the slot is left empty. On return every file of the slot is on disk
        (fsynced with its directories), so the journal may say ``COMMITTED`` next.
        """
        self.clear(slot)
        dest = self.path(slot)
        dest.mkdir(parents=True)
        try:
            with tarfile.open(tar_path, "r:*") as tar:
                members = tar.getmembers()
                check_members(members, self.max_unpacked_bytes)
                extract_checked(tar, members, dest)
            installed = self.verify(slot)
            sync_tree(dest)
            return installed
        except (tarfile.TarError, EOFError) as exc:
            self.clear(slot)
            raise ArtifactError(f"bundle is not a readable tar: {exc}", ErrorCode.BUNDLE_INVALID) from exc
        except OSError as exc:
            self.clear(slot)
            if exc.errno == errno.ENOSPC:
                raise DeviceError(f"disk full while unpacking into slot {slot}", ErrorCode.DISK_FULL) from exc
            raise
        except ArtifactError:
            self.clear(slot)
            raise


def sync_tree(root: Path) -> None:
    """fsync every file and directory under ``root``, then ``root``'s parent (which names it).

    Without it a power cut after the journal says ``COMMITTED`` can leave the slot with empty or
    missing files. The parent's parent needs nothing here: the journal write that follows fsyncs
    the data directory.
    """
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))
    fsync_dir(root.parent)


def check_members(members: list[tarfile.TarInfo], max_bytes: int) -> None:
    """Refuse a tar whose members could write outside the slot or fill the disk (pure)."""
    total = 0
    for m in members:
        p = PurePosixPath(m.name)
        if m.name.startswith(("/", "\\")) or p.is_absolute() or ".." in p.parts or "\\" in m.name:
            raise ArtifactError(
                f"bundle tar member {m.name!r} points outside the bundle", ErrorCode.BUNDLE_INVALID
            )
        if not (m.isfile() or m.isdir()):
            raise ArtifactError(
                f"bundle tar member {m.name!r} is a link or special file; bundles hold plain files only",
                ErrorCode.BUNDLE_INVALID,
            )
        total += max(0, m.size)
        if total > max_bytes:
            raise ArtifactError(f"bundle unpacks to more than {max_bytes} bytes", ErrorCode.BUNDLE_INVALID)


def extract_checked(tar: tarfile.TarFile, members: list[tarfile.TarInfo], dest: Path) -> None:
    """Unpack ``members`` (already passed by :func:`check_members`) into ``dest``.

    Where the standard library has extraction filters (Python 3.11.4 and later) the "data" filter
    repeats those checks in its own terms. Debian bookworm's Python 3.11.2, which Raspberry Pi OS
    ships, has none: there the members are unpacked as checked, with set-id bits and group/other
    write permission cleared as the "data" filter would."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=members, filter="data")
        return
    for member in members:
        member.mode &= 0o755
    tar.extractall(dest, members=members)  # the members passed check_members
