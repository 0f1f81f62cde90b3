"""Atomic, durable file writes: the one way EdgeFleet replaces a file on disk.

A write goes to a temp file beside the target (``.<name>.<random>.tmp``, same filesystem, so the
rename is atomic), the temp file is fsynced, ``os.replace`` puts it over the target, and the
directory is fsynced so that the rename itself survives a power cut. A reader sees the old file
or the new one, never a mix; after a crash at any point the target is one of the two and at most
a stale temp file is left, which :func:`remove_stale_temps` clears.

The agent, the compilers and the server all write this way, so the module lives with the agent
(a device installs only the agent) and imports nothing else.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, atomically and durably. The parent directory must exist.

    Raises :class:`OSError` (the target is then unchanged and no temp file is left).
    """
    with atomic_writer(path) as fh:
        fh.write(data)


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file to stream the new content of ``path`` into; on a clean exit from the block it
    is fsynced and replaces ``path``, then the directory is fsynced. If the block raises (or the
    process is interrupted), ``path`` is unchanged and the temp file is removed.

    Raises :class:`OSError`; the parent directory must exist.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the creation, rename or removal of an entry in directory ``path`` durable.

    Raises :class:`OSError`.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files an interrupted write of ``path`` may have left (a ``kill -9`` between
    the temp write and the rename). Call it only when no other writer of ``path`` runs."""
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
