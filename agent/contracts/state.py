"""Desired state (server → device), reported state and online status (device → server).

All three are JSON objects with a ``schema`` field. The desired state is published retained per
device, so a device that was offline gets the latest when it returns; ``generation`` grows by one
with every change, and a device reports the generation it has applied.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from agent.contracts._fields import obj, opt, req, schema
from agent.contracts.errors import ContractError

DESIRED_SCHEMA = "edgefleet.desired/1"
REPORTED_SCHEMA = "edgefleet.reported/1"
STATUS_SCHEMA = "edgefleet.status/1"


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
    SIGNATURE_INVALID = "SIGNATURE_INVALID"  # the trust chain refused the bundle
    BUNDLE_INVALID = "BUNDLE_INVALID"  # not a bundle, or its manifest and files disagree
    INCOMPATIBLE = "INCOMPATIBLE"  # target/runtime the device can't run
    RUNTIME_UNAVAILABLE = "RUNTIME_UNAVAILABLE"  # the runtime isn't installed on the device
    LOAD_FAILED = "LOAD_FAILED"  # the runtime refused the model
    SELF_TEST_FAILED = "SELF_TEST_FAILED"  # outputs differ from the bundle's expected outputs
    DISK_FULL = "DISK_FULL"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class DesiredModel:
    """One model slot of the desired state: which bundle to run and how to fetch it."""

    name: str
    version: str
    target: str
    precision: str
    target_path: str  # the bundle's path in the artifact store (and, later, the TUF target path)
    url: str  # where to download it; relative URLs resolve against the server URL
    size: int
    sha256: str
    slot: str = "default"

    @classmethod
    def from_dict(cls, data: Any, where: str) -> DesiredModel:
        d = obj(data, where)
        m = cls(
            name=req(d, "name", str, where),
            version=req(d, "version", str, where),
            target=req(d, "target", str, where),
            precision=req(d, "precision", str, where),
            target_path=req(d, "target_path", str, where),
            url=req(d, "url", str, where),
            size=req(d, "size", int, where),
            sha256=req(d, "sha256", str, where),
            slot=opt(d, "slot", str, where, "default"),
        )
        if m.size <= 0:
            raise ContractError(f"{where}.size: must be positive")
        # The agent names download files after it, so anything but 64 hex digits could be a path.
        if len(m.sha256) != 64 or any(c not in "0123456789abcdef" for c in m.sha256):
            raise ContractError(f"{where}.sha256: not a lowercase hex sha256")
        return m

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class DesiredState:
    device_id: str
    generation: int
    models: tuple[DesiredModel, ...] = ()
    deployment_id: str | None = None
    serving: dict[str, Any] = field(default_factory=dict)
    offload: dict[str, Any] = field(default_factory=dict)
    issued_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": DESIRED_SCHEMA,
            "device_id": self.device_id,
            "generation": self.generation,
            "deployment_id": self.deployment_id,
            "models": [asdict(m) for m in self.models],
            "serving": self.serving,
            "offload": self.offload,
            "issued_at": self.issued_at,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> DesiredState:
        w = "desired"
        d = obj(_loads(payload, w), w)
        schema(d, DESIRED_SCHEMA, w)
        models = tuple(
            DesiredModel.from_dict(m, f"{w}.models[{i}]") for i, m in enumerate(req(d, "models", list, w))
        )
        slots = [m.slot for m in models]
        if len(set(slots)) != len(slots):
            raise ContractError(f"{w}.models: a slot is named twice")
        return cls(
            device_id=req(d, "device_id", str, w),
            generation=req(d, "generation", int, w),
            models=models,
            deployment_id=opt(d, "deployment_id", str, w),
            serving=opt(d, "serving", dict, w, {}),
            offload=opt(d, "offload", dict, w, {}),
            issued_at=opt(d, "issued_at", float, w, 0.0),
        )


@dataclass(frozen=True)
class ReportedError:
    code: str
    message: str

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ReportedError:
        d = obj(data, where)
        return cls(code=req(d, "code", str, where), message=req(d, "message", str, where))


@dataclass(frozen=True)
class ReportedState:
    """What a device says about itself after every state change of an update.

    ``generation`` is the desired generation this report is about; ``active`` and ``previous`` are
    ``name:version`` refs (``None`` when nothing is installed). A failed update ends in ``IDLE``
    with ``error`` set and ``active`` unchanged. ``seq`` only grows over a device's reports, across
    restarts too (the agent's journal write count), so a reader can drop a late duplicate without
    trusting the device's clock (``ts``); a re-sent report keeps its ``seq``.
    """

    device_id: str
    generation: int
    state: UpdateState
    active: str | None = None
    previous: str | None = None
    error: ReportedError | None = None
    progress: dict[str, int] | None = None
    inference_url: str | None = None
    ts: float = field(default_factory=time.time)
    seq: int | None = None

    def is_older_than(self, other: ReportedState) -> bool:
        """Whether this report is a stale one next to ``other`` (pure): an older generation, or
        the same generation and an older ``seq`` (``ts`` when either lacks a ``seq``)."""
        if self.generation != other.generation:
            return self.generation < other.generation
        if self.seq is not None and other.seq is not None:
            return self.seq < other.seq
        return self.ts < other.ts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema"] = REPORTED_SCHEMA
        d["state"] = str(self.state)
        return d

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> ReportedState:
        w = "reported"
        d = obj(_loads(payload, w), w)
        schema(d, REPORTED_SCHEMA, w)
        raw_state = req(d, "state", str, w)
        try:
            state = UpdateState(raw_state)
        except ValueError as exc:
            raise ContractError(f"{w}.state: unknown state {raw_state!r}") from exc
        err = d.get("error")
        return cls(
            device_id=req(d, "device_id", str, w),
            generation=req(d, "generation", int, w),
            state=state,
            active=opt(d, "active", str, w),
            previous=opt(d, "previous", str, w),
            error=None if err is None else ReportedError.from_dict(err, f"{w}.error"),
            progress=opt(d, "progress", dict, w),
            inference_url=opt(d, "inference_url", str, w),
            ts=opt(d, "ts", float, w, 0.0),
            seq=opt(d, "seq", int, w),
        )


@dataclass(frozen=True)
class Status:
    """Online/offline, published retained by the device; the broker publishes the offline form as
    the device's last will when its connection drops.

    ``connection`` numbers the device's MQTT connections and only grows, across restarts too
    (the agent keeps the count on disk). A connection's will and its online message carry the same
    number, so a reader can order them without trusting the device's clock: the will of an old
    connection that arrives after the online message of a newer one is stale.
    """

    device_id: str
    online: bool
    ts: float = field(default_factory=time.time)
    connection: int | None = None

    def supersedes(self, last_connection: int | None) -> bool:
        """Whether this status is at least as new as the last one applied (pure)."""
        return self.connection is None or last_connection is None or self.connection >= last_connection

    def to_json(self) -> bytes:
        body = {"schema": STATUS_SCHEMA, "device_id": self.device_id, "online": self.online, "ts": self.ts}
        if self.connection is not None:
            body["connection"] = self.connection
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> Status:
        w = "status"
        d = obj(_loads(payload, w), w)
        schema(d, STATUS_SCHEMA, w)
        return cls(
            device_id=req(d, "device_id", str, w),
            online=req(d, "online", bool, w),
            ts=opt(d, "ts", float, w, 0.0),
            connection=opt(d, "connection", int, w),
        )


def _loads(payload: bytes | str, where: str) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"{where}: payload is not JSON: {exc}") from exc
