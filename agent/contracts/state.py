"""Desired state (server → device), reported state and online status (device → server).

All three are JSON objects with a ``schema`` field. The desired state is published retained per
device, so a device that was offline gets the latest when it returns; ``generation`` grows by one
with every change, and a device reports the generation it has applied.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from agent.contracts.codec import Contract
from agent.contracts.errors import ContractError
from agent.contracts.policy import OffloadPolicy, ServingPolicy

DESIRED_SCHEMA = "edgefleet.desired/1"
REPORTED_SCHEMA = "edgefleet.reported/1"
STATUS_SCHEMA = "edgefleet.status/1"
# The model key a device serves while it serves one model.
DEFAULT_MODEL_KEY = "default"
# Bounds both sides hold (fleet_server/limits.py takes them from here). Generations and connection
# numbers are PostgreSQL ``integer`` columns on the server; ``seq``, sizes and counters must be
# read exactly by a JSON reader in a browser (the dashboard); an error message is stored whole up
# to ERROR_MESSAGE_MAX characters. An agent that took a desired generation past INT32_MAX would
# report one the server refuses, and ignore every real (smaller) generation after it.
INT32_MAX = 2**31 - 1
JSON_INT_MAX = 2**53 - 1
ERROR_MESSAGE_MAX = 4096
TRUNCATED = "…[truncated {n} chars]"


def in_range(value: int, top: int, where: str) -> None:
    """Raises :class:`ContractError` unless ``0 <= value <= top``."""
    if not 0 <= value <= top:
        raise ContractError(f"{where}: {value} is outside 0..{top}")


def truncate(text: str, limit: int = ERROR_MESSAGE_MAX) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and a marker saying how
    many characters were cut, ``limit`` characters in all (never longer than the input)."""
    if len(text) <= limit:
        return text
    # The marker's length depends on the count it names, which depends on the marker's length:
    # size it for the whole text (the longest count), then fill the digits saved with text.
    keep = max(limit - len(TRUNCATED.format(n=len(text))), 0)
    marker = TRUNCATED.format(n=len(text) - keep)
    keep = max(limit - len(marker), 0)
    return (text[:keep] + TRUNCATED.format(n=len(text) - keep))[:limit]


class UpdateState(StrEnum):
    """The agent's update state machine (DESIGN.md)."""

    IDLE = "IDLE"
    DOWNLOADING = "DOWNLOADING"
    VERIFYING = "VERIFYING"
    INSTALLING = "INSTALLING"
    LOADING = "LOADING"
    SELF_TEST = "SELF_TEST"
    COMMITTED = "COMMITTED"
    ROLLING_BACK = "ROLLING_BACK"


class ErrorCode(StrEnum):
    """Why an update failed, as a device reports it. Named for what an operator should look at."""

    DOWNLOAD_FAILED = "DOWNLOAD_FAILED"  # network or server; retried with backoff first
    SIZE_MISMATCH = "SIZE_MISMATCH"  # more or fewer bytes than the desired state declared
    HASH_MISMATCH = "HASH_MISMATCH"  # the bytes are not the ones the server declared
    SIGNATURE_INVALID = "SIGNATURE_INVALID"  # the trust chain refused the bundle or its metadata
    ROLLBACK_ATTEMPT = "ROLLBACK_ATTEMPT"  # TUF metadata older than what the device trusts
    METADATA_EXPIRED = "METADATA_EXPIRED"  # TUF metadata past its expiry (frozen repository)
    TARGET_MISMATCH = "TARGET_MISMATCH"  # desired state, TUF target and manifest disagree
    LENGTH_EXCEEDED = "LENGTH_EXCEEDED"  # more bytes than the declared length (endless data)
    UNKNOWN_TARGET = "UNKNOWN_TARGET"  # the desired state names no signed target
    TRUST_ROOT_MISSING = "TRUST_ROOT_MISSING"  # no TUF root yet (enrol, or --tuf-root)
    BUNDLE_INVALID = "BUNDLE_INVALID"  # not a bundle, or its manifest and files disagree
    INCOMPATIBLE = "INCOMPATIBLE"  # target/runtime the device can't run
    RUNTIME_UNAVAILABLE = "RUNTIME_UNAVAILABLE"  # the runtime isn't installed on the device
    LOAD_FAILED = "LOAD_FAILED"  # the runtime refused the model
    SELF_TEST_FAILED = "SELF_TEST_FAILED"  # outputs differ from the bundle's expected outputs
    DISK_FULL = "DISK_FULL"
    STORAGE_FAILED = "STORAGE_FAILED"  # the data directory can't be written (read-only, I/O error)
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class DesiredModel(Contract):
    """One model of the desired state: which bundle to run and how to fetch it.

    ``key`` is the *model key*: the name of the place this model takes among the models a device
    serves (``default`` while devices serve one model each). It is not an A/B slot: those are the
    two directories an update alternates between on the device, whatever the model key.
    """

    name: str
    version: str
    target: str
    precision: str
    target_path: str  # the bundle's TUF target path (also its path in the artifact store)
    url: str  # informational: agents download from their configured server only (TUF target path)
    size: int
    sha256: str
    key: str = DEFAULT_MODEL_KEY

    def check(self, where: str) -> None:
        if self.size <= 0:
            raise ContractError(f"{where}.size: must be positive")
        in_range(self.size, JSON_INT_MAX, f"{where}.size")
        # The agent names download files after it, so anything but 64 hex digits could be a path.
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ContractError(f"{where}.sha256: not a lowercase hex sha256")

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class DesiredState(Contract):
    """What the server wants a device to run. ``serving`` and ``offload`` are the policies the
    agent applies to what it serves (:mod:`agent.contracts.policy`); their empty form ``{}`` means
    every default."""

    WHERE: ClassVar[str] = "desired"
    SCHEMA: ClassVar[str | None] = DESIRED_SCHEMA

    device_id: str
    generation: int
    models: tuple[DesiredModel, ...] = ()
    deployment_id: str | None = None
    serving: ServingPolicy = field(default_factory=ServingPolicy)
    offload: OffloadPolicy = field(default_factory=OffloadPolicy)
    issued_at: float = 0.0

    def check(self, where: str) -> None:
        in_range(self.generation, INT32_MAX, f"{where}.generation")
        keys = [m.key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ContractError(f"{where}.models: a model key is named twice")


@dataclass(frozen=True)
class ReportedError(Contract):
    code: str
    message: str


@dataclass(frozen=True)
class ReportedState(Contract):
    """What a device says about itself after every state change of an update.

    ``generation`` is the desired generation this report is about; ``active`` and ``previous`` are
    ``name:version`` refs (``None`` when nothing is installed). A failed update ends in ``IDLE``
    with ``error`` set and ``active`` unchanged. ``seq`` only grows over a device's reports, across
    restarts too (the agent's journal write count), so a reader can drop a late duplicate without
    trusting the device's clock (``ts``); a re-sent report keeps its ``seq``. ``recovery`` says
    how the update came back from an agent that stopped in the middle of it (``resumed after a
    crash at LOADING (1 of 2)``, or the roll back once the crash-loop bound is reached); ``None``
    when it ran through (and from agents that predate the field). ``refused`` counts the MQTT
    messages the agent refused since it started, by reason (``too_large``, ``too_deep``,
    ``malformed``, ``handler_error``, ``quarantined``); ``None`` when it refused none.
    """

    WHERE: ClassVar[str] = "reported"
    SCHEMA: ClassVar[str | None] = REPORTED_SCHEMA

    device_id: str
    generation: int
    state: UpdateState
    active: str | None = None
    previous: str | None = None
    error: ReportedError | None = None
    progress: dict[str, int] | None = None
    inference_url: str | None = None
    ts: float = field(default_factory=time.time, metadata={"missing": 0.0})
    seq: int | None = None
    recovery: str | None = None
    refused: dict[str, int] | None = None

    def is_older_than(self, other: ReportedState) -> bool:
        """Whether this report is a stale one next to ``other`` (pure): an older generation, or
        the same generation and an older ``seq`` (``ts`` when either lacks a ``seq``)."""
        if self.generation != other.generation:
            return self.generation < other.generation
        if self.seq is not None and other.seq is not None:
            return self.seq < other.seq
        return self.ts < other.ts


@dataclass(frozen=True)
class Status(Contract):
    """Online/offline, published retained by the device; the broker publishes the offline form as
    the device's last will when its connection drops.

    ``connection`` numbers the device's MQTT connections and only grows, across restarts too
    (the agent keeps the count on disk). A connection's will and its online message carry the same
    number, so a reader can order them without trusting the device's clock: the will of an old
    connection that arrives after the online message of a newer one is stale. It is left out of
    the payload when unknown.
    """

    WHERE: ClassVar[str] = "status"
    SCHEMA: ClassVar[str | None] = STATUS_SCHEMA
    OMIT_DEFAULTS: ClassVar[bool] = True  # only ``connection`` has a plain default

    device_id: str
    online: bool
    ts: float = field(default_factory=time.time, metadata={"missing": 0.0})
    connection: int | None = None

    def supersedes(self, last_connection: int | None) -> bool:
        """Whether this status is at least as new as the last one applied (pure)."""
        return self.connection is None or last_connection is None or self.connection >= last_connection
