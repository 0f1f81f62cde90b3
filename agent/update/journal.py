"""The update journal: where an update stands, persisted before every side effect.

One JSON file, replaced atomically (write a temp file beside it, fsync it, ``os.replace`` it over
the old one, fsync the directory), so after ``kill -9`` or a power cut the file is either the old
journal or the new one, never a mix. The active-slot pointer lives here too: switching the served
model is the one journal write that says ``COMMITTED`` with the new ``active``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from agent.contracts._fields import obj, opt, req
from agent.contracts.errors import ContractError
from agent.contracts.state import DesiredModel, ReportedError, UpdateState
from agent.durable import atomic_write, remove_stale_temps

log = logging.getLogger(__name__)

JOURNAL_SCHEMA = "edgefleet.agent-journal/1"
MAX_FAILED = 64  # remembered failed generations; older ones can't come back (generations only grow)


@dataclass(frozen=True)
class InstalledModel:
    """A model installed in a slot: what it is and where it lives."""

    name: str
    version: str
    sha256: str  # of the bundle tar, as the desired state declared it
    slot: str  # "a" or "b"
    target_path: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @classmethod
    def from_desired(cls, model: DesiredModel, slot: str) -> InstalledModel:
        return cls(model.name, model.version, model.sha256, slot, model.target_path)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> InstalledModel:
        d = obj(data, where)
        return cls(
            name=req(d, "name", str, where),
            version=req(d, "version", str, where),
            sha256=req(d, "sha256", str, where),
            slot=req(d, "slot", str, where),
            target_path=opt(d, "target_path", str, where, ""),
        )


@dataclass(frozen=True)
class Journal:
    """Everything the agent must know after a restart.

    ``generation`` and ``desired`` describe the update in flight (or the last one);
    ``target_slot`` is the inactive slot it installs into; ``downloaded`` is the download's
    progress in bytes (never more than the ``.part`` file holds after a kill, as it is saved from
    flushed bytes; after a power cut only the synced bytes are sure, so the file's size is the
    truth a resume goes by); ``resumes`` counts start-ups that resumed this update, and
    ``recovery`` says how the last one went (reported).
    """

    state: UpdateState = UpdateState.IDLE
    generation: int = 0
    desired: DesiredModel | None = None
    target_slot: str | None = None
    active: InstalledModel | None = None
    previous: InstalledModel | None = None
    applied_generation: int = 0
    failed_generations: tuple[int, ...] = ()
    downloaded: int = 0
    resumes: int = 0
    recovery: str | None = None
    error: ReportedError | None = None
    updated_at: float = 0.0
    writes: int = 0  # grows with every save, across restarts: orders this device's reports

    def failed(self, generation: int) -> tuple[int, ...]:
        """``failed_generations`` with ``generation`` added (bounded, oldest dropped)."""
        gens = (*(g for g in self.failed_generations if g != generation), generation)
        return gens[-MAX_FAILED:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": JOURNAL_SCHEMA,
            "state": str(self.state),
            "generation": self.generation,
            "desired": None if self.desired is None else asdict(self.desired),
            "target_slot": self.target_slot,
            "active": None if self.active is None else asdict(self.active),
            "previous": None if self.previous is None else asdict(self.previous),
            "applied_generation": self.applied_generation,
            "failed_generations": list(self.failed_generations),
            "downloaded": self.downloaded,
            "resumes": self.resumes,
            "recovery": self.recovery,
            "error": None if self.error is None else asdict(self.error),
            "updated_at": self.updated_at,
            "writes": self.writes,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Journal:
        w = "journal"
        d = obj(data, w)
        if d.get("schema") != JOURNAL_SCHEMA:
            raise ContractError(f"{w}: schema is {d.get('schema')!r}, expected {JOURNAL_SCHEMA!r}")
        try:
            state = UpdateState(req(d, "state", str, w))
        except ValueError as exc:
            raise ContractError(f"{w}.state: {exc}") from exc
        desired, active, previous, error = (d.get(k) for k in ("desired", "active", "previous", "error"))
        return cls(
            state=state,
            generation=req(d, "generation", int, w),
            desired=None if desired is None else DesiredModel.from_dict(desired, f"{w}.desired"),
            target_slot=opt(d, "target_slot", str, w),
            active=None if active is None else InstalledModel.from_dict(active, f"{w}.active"),
            previous=None if previous is None else InstalledModel.from_dict(previous, f"{w}.previous"),
            applied_generation=opt(d, "applied_generation", int, w, 0),
            failed_generations=tuple(int(g) for g in opt(d, "failed_generations", list, w, [])),
            downloaded=opt(d, "downloaded", int, w, 0),
            resumes=opt(d, "resumes", int, w, 0),
            recovery=opt(d, "recovery", str, w),
            writes=opt(d, "writes", int, w, 0),
            error=None if error is None else ReportedError.from_dict(error, f"{w}.error"),
            updated_at=opt(d, "updated_at", float, w, 0.0),
        )


class JournalStore:
    """Reads and atomically replaces the journal file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Journal:
        """The journal on disk, or a fresh one when there is none.

        A journal that can't be read (only disk corruption can do that, given the atomic writes)
        is moved aside as ``<name>.corrupt-<time>`` and a fresh journal is returned: the agent
        then serves nothing until the next desired state, which is safer than guessing.
        """
        remove_stale_temps(self.path)
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return Journal()
        try:
            return Journal.from_dict(json.loads(text))
        except (ValueError, ContractError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.error(
                "journal %s is unreadable (%s); moved it to %s and starting fresh", self.path, exc, aside
            )
            return Journal()

    def save(self, journal: Journal) -> Journal:
        """Persist ``journal`` (stamped with the time) atomically and durably; returns what was written."""
        journal = replace(journal, updated_at=time.time(), writes=journal.writes + 1)
        data = (json.dumps(journal.to_dict(), indent=1, sort_keys=True) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, data)
        return journal
