"""``python -m tests.faults.kill_agent ARGS``: the real agent, which SIGKILLs itself at one point
of one journal write, as a power cut or ``kill -9`` there would.

``$EDGEFLEET_TEST_KILL`` names the point as ``STATE@GENERATION:PHASE``, the write being the one
that puts the journal in ``STATE`` for ``GENERATION``:

- ``written``: the temp file is written and fsynced, not yet renamed over ``journal.json``;
- ``renamed``: renamed, the directory not yet fsynced;
- ``saved``: the write is complete (the state is on disk), the step it starts has not begun and
  nothing has been reported yet.

Before it dies it writes what it saw to ``$EDGEFLEET_TEST_KILL_MARK`` (JSON), so a test knows the
point was reached. Nothing in the agent is changed: the real :func:`agent.durable.atomic_writer`
runs, with ``os.replace`` and ``fsync_dir`` wrapped in that module only.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import agent.durable as durable
from agent.update.journal import Journal, JournalStore

STATE_GEN, PHASE = os.environ["EDGEFLEET_TEST_KILL"].rsplit(":", 1)
STATE, GEN = STATE_GEN.split("@")
MARK = Path(os.environ["EDGEFLEET_TEST_KILL_MARK"])
_pending = threading.local()  # a journal write that matched and was renamed, until its dir fsync


def _matches(state: str, generation: int) -> bool:
    return state == STATE and generation == int(GEN)


def _die(**seen: Any) -> None:
    tmp = MARK.with_name(MARK.name + ".tmp")
    tmp.write_text(json.dumps({"point": os.environ["EDGEFLEET_TEST_KILL"], **seen}))
    os.replace(tmp, MARK)
    os.kill(os.getpid(), signal.SIGKILL)


def _journal_in(path: str | os.PathLike[str]) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_bytes()))


class _Os:
    """``os`` for :mod:`agent.durable`, with ``replace`` watched."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def replace(src: str, dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == "journal.json":
            new = _journal_in(src)
            if _matches(new["state"], new["generation"]):
                if PHASE == "written":
                    _die(temp=Path(src).name)
                _pending.hit = PHASE == "renamed"
        os.replace(src, dst)


_real_fsync_dir = durable.fsync_dir


def _fsync_dir(path: Path) -> None:
    if getattr(_pending, "hit", False):
        _pending.hit = False
        _die()
    _real_fsync_dir(path)


_real_save = JournalStore.save


def _save(self: JournalStore, journal: Journal) -> Journal:
    saved = _real_save(self, journal)
    if PHASE == "saved" and _matches(str(saved.state), saved.generation):
        _die(writes=saved.writes, downloaded=saved.downloaded)
    return saved


durable.os = _Os()  # type: ignore[assignment]
durable.fsync_dir = _fsync_dir
JournalStore.save = _save  # type: ignore[method-assign]

if __name__ == "__main__":
    from agent.cli import run

    run()
