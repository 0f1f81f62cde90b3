"""Tell an orderly stop from a crash at the next start.

An orderly stop (SIGTERM: a reboot, ``systemctl restart``) may still cut a long step short, such
as a TensorRT engine build while LOADING. So the stopping agent leaves a marker holding the
journal's write count; at the next start, a marker equal to the journal's count proves that
nothing ran after the stop was decided. An update cut short in LOADING or SELF_TEST restarts
from verification either way (under the crash-loop bound of :mod:`agent.update.machine`); the
marker says in the report which of the two happened.
"""

from __future__ import annotations

from pathlib import Path

from agent.durable import atomic_write, remove_stale_temps

MARKER = "clean-stop"


def mark(data_dir: Path, journal_writes: int) -> None:
    """Record an orderly stop at ``journal_writes`` (atomic, durable)."""
    atomic_write(data_dir / MARKER, str(journal_writes).encode())


def take(data_dir: Path, journal_writes: int) -> bool:
    """Whether the last stop was orderly with the journal as it is now; removes the marker, so it
    speaks for one start only."""
    path = data_dir / MARKER
    remove_stale_temps(path)  # a stop cut short while marking
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return False
    path.unlink(missing_ok=True)
    return text == str(journal_writes)
