"""The database schema as SQLAlchemy 2.0 ORM classes. The Alembic migrations in
``fleet_server/migrations`` create exactly this; change both together.

JSON columns hold plain JSON (labels, facts, manifests); the desired and reported states and a
device's error are JSON too, read and written as their :mod:`agent.contracts` types
(:mod:`fleet_server.db.contract_columns`). Times are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from agent.contracts import DesiredState, ReportedError, ReportedState
from agent.contracts.policy import ServingPolicy
from fleet_server.db.contract_columns import (
    DesiredStateJSON,
    GroupOffloadJSON,
    ReportedErrorJSON,
    ReportedStateJSON,
    RolloutSpecJSON,
    ServingPolicyJSON,
)
from fleet_server.rollout.policy import GroupOffload
from fleet_server.rollout.spec import RolloutSpec


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    # none_as_null: a Python None is SQL NULL, not the JSON text "null", so IS NULL works.
    type_annotation_map = {
        dict[str, Any]: JSON(none_as_null=True),
        list[Any]: JSON(none_as_null=True),
        datetime: DateTime(timezone=True),
        DesiredState: DesiredStateJSON(),
        ReportedState: ReportedStateJSON(),
        ReportedError: ReportedErrorJSON(),
        ServingPolicy: ServingPolicyJSON(),
        GroupOffload: GroupOffloadJSON(),
        RolloutSpec: RolloutSpecJSON(),
    }


class ModelVersion(Base):
    """An uploaded source model: one ``name:version``, its bytes in the store under ``source_key``."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_versions_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    source_key: Mapped[str] = mapped_column(String(512))
    calibration_key: Mapped[str | None] = mapped_column(String(512))
    validation_key: Mapped[str | None] = mapped_column(String(512))
    min_agreement: Mapped[float | None] = mapped_column(Float)
    inputs: Mapped[list[Any]] = mapped_column(default=list)
    outputs: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    bundles: Mapped[list[Bundle]] = relationship(back_populates="model_version", order_by="Bundle.id")

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class Bundle(Base):
    """One compile of a model version for a (target, precision, settings key)."""

    __tablename__ = "bundles"
    __table_args__ = (
        UniqueConstraint("model_version_id", "target", "precision", "settings_key", name="uq_bundles_build"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    target: Mapped[str] = mapped_column(String(64))
    precision: Mapped[str] = mapped_column(String(16))
    settings_key: Mapped[str] = mapped_column(String(128))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    profile: Mapped[str] = mapped_column(String(128))  # the profile the compile ran for
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    target_path: Mapped[str | None] = mapped_column(String(512))
    size: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    model_version: Mapped[ModelVersion] = relationship(back_populates="bundles")


class Device(Base):
    """A registered device: what it is, what it should run (desired) and what it says (reported)."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    profile: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    # The MQTT connection number of the last status applied (Status.connection); older ones are stale.
    status_connection: Mapped[int | None] = mapped_column(default=None)
    last_seen: Mapped[datetime | None] = mapped_column()
    desired: Mapped[DesiredState | None] = mapped_column()
    desired_generation: Mapped[int] = mapped_column(Integer, default=0)
    reported: Mapped[ReportedState | None] = mapped_column()
    reported_generation: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[ReportedError | None] = mapped_column()
    inference_url: Mapped[str | None] = mapped_column(String(512))
    telemetry: Mapped[dict[str, Any] | None] = mapped_column()
    telemetry_at: Mapped[datetime | None] = mapped_column()
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # identity (fleet_server.identity): the current certificate, and when it was revoked
    cert_serial: Mapped[str | None] = mapped_column(String(40))
    cert_not_after: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class Group(Base):
    """A named set of devices: static members plus a label selector, and the serving and offload
    policies its devices get with every deployment to it (``None``: the defaults)."""

    __tablename__ = "groups"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    selector: Mapped[dict[str, Any]] = mapped_column(default=dict)
    serving: Mapped[ServingPolicy | None] = mapped_column()
    offload: Mapped[GroupOffload | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[GroupMember]] = relationship(
        back_populates="group", cascade="all, delete-orphan", order_by="GroupMember.device_id"
    )

    @property
    def device_ids(self) -> list[str]:
        return [m.device_id for m in self.members]


class GroupMember(Base):
    """A device named in a group. Not a foreign key: a group may name devices not registered yet."""

    __tablename__ = "group_members"

    group_name: Mapped[str] = mapped_column(ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)

    group: Mapped[Group] = relationship(back_populates="members")


class Deployment(Base):
    """A model version rolled out to a group."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    group_name: Mapped[str] = mapped_column(ForeignKey("groups.name"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="PENDING", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The rollout: its spec (None: the defaults), the highest wave opened (-1: none) of how many,
    # when the opened waves all ended (epoch s; the bake's start), whether it rolls back, the
    # devices per wave per state (kept by every decision, so a report costs O(1)), and the
    # gates' last figures.
    spec: Mapped[RolloutSpec | None] = mapped_column()
    wave: Mapped[int] = mapped_column(Integer, default=-1)
    waves: Mapped[int] = mapped_column(Integer, default=0)
    wave_ended_at: Mapped[float | None] = mapped_column(Float)
    rollback: Mapped[bool] = mapped_column(Boolean, default=False)
    counts: Mapped[dict[str, Any] | None] = mapped_column()
    gate: Mapped[dict[str, Any] | None] = mapped_column()

    model_version: Mapped[ModelVersion] = relationship()
    devices: Mapped[list[DeploymentDevice]] = relationship(
        back_populates="deployment", cascade="all, delete-orphan", order_by="DeploymentDevice.device_id"
    )


class DeploymentDevice(Base):
    """One device of a deployment: the generation its desired state went out as, and its state."""

    __tablename__ = "deployment_devices"

    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True, index=True
    )
    generation: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="PENDING")
    active: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[ReportedError | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Its wave (None: not started), when it was told and when it committed (epoch s), the models
    # it was told before this deployment (a list of desired-model objects; what a roll-back
    # returns it to) and whether its roll-back went out.
    wave: Mapped[int | None] = mapped_column(Integer)
    notified_at: Mapped[float | None] = mapped_column(Float)
    committed_at: Mapped[float | None] = mapped_column(Float)
    previous: Mapped[list[Any] | None] = mapped_column()
    rolled_back: Mapped[bool] = mapped_column(Boolean, default=False)

    deployment: Mapped[Deployment] = relationship(back_populates="devices")


class OperatorToken(Base):
    """An operator's API token: its name and role, and only the sha256 of the secret (the secret
    itself is shown once, when it is made). Revoked tokens stay, so names are not reused and the
    audit log's names keep meaning one token."""

    __tablename__ = "operator_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class AuditEntry(Base):
    """One mutating API call, as it was answered. Append-only: :mod:`fleet_server.db.append_only`
    refuses updates and deletes in the ORM, and the migration adds triggers that refuse them in
    the database itself."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))  # a token's name, "bootstrap", "anonymous", "unknown"
    role: Mapped[str | None] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str | None] = mapped_column(String(300))
    client: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)


class EnrollmentToken(Base):
    """A token a device enrolls with: only its sha256 is kept. It puts the device in ``group_name``
    with ``labels`` added, ``uses_left`` more times, until ``expires_at``."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    group_name: Mapped[str] = mapped_column(String(128))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    uses_left: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeviceCertificate(Base):
    """Every client certificate the fleet CA issued to a device (hex serial), so a revocation
    lists them all in the CRL while they are valid."""

    __tablename__ = "device_certificates"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), index=True)
    not_after: Mapped[datetime] = mapped_column()
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


# SQLite makes only an INTEGER PRIMARY KEY an alias of its rowid (autoincrementing); PostgreSQL
# gets a 64-bit key, since telemetry rows come by the million.
_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")


class TelemetryRow(Base):
    """One telemetry window of one device and model, as received (:class:`agent.contracts.Telemetry`),
    kept for the raw retention (:mod:`fleet_server.telemetry`). ``ts`` is the window's end by the
    device's clock (the receipt time when that is unusable); ``received_at`` is when the server took
    it. ``model`` is ``""`` for a window without one."""

    __tablename__ = "telemetry"
    __table_args__ = (
        Index("ix_telemetry_model_ts", "model", "ts"),
        Index("ix_telemetry_device_ts", "device_id", "ts"),
        Index("ix_telemetry_ts", "ts"),
        # A QoS 1 redelivery (or a replay after an unacknowledged send) is the same window again:
        # stored once. A message without a seq is never taken for a duplicate (NULLs differ).
        UniqueConstraint("device_id", "seq", "ts", name="uq_telemetry_device_seq_ts"),
    )

    id: Mapped[int] = mapped_column(_ROW_ID, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(300), default="")
    ts: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    window_s: Mapped[float] = mapped_column(Float, default=0.0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    throughput_rps: Mapped[float | None] = mapped_column(Float)
    p50_ms: Mapped[float | None] = mapped_column(Float)
    p95_ms: Mapped[float | None] = mapped_column(Float)
    p99_ms: Mapped[float | None] = mapped_column(Float)
    queue_depth: Mapped[int | None] = mapped_column(BigInteger)
    offload_ratio: Mapped[float | None] = mapped_column(Float)
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_mb: Mapped[float | None] = mapped_column(Float)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    classes: Mapped[dict[str, Any] | None] = mapped_column()
    outputs: Mapped[dict[str, Any] | None] = mapped_column()


class TelemetryRollup(Base):
    """One minute of one device and model's telemetry, summed so rollups merge by adding:
    latency and offload figures are weighted by the answered requests of the windows that had
    them (``*_sum`` / ``*_weight``); outputs keep ``{name: {count, sum, squares, min, max}}``."""

    __tablename__ = "telemetry_rollups"
    __table_args__ = (
        UniqueConstraint("device_id", "model", "bucket", name="uq_telemetry_rollups_key"),
        Index("ix_telemetry_rollups_model_bucket", "model", "bucket"),
        Index("ix_telemetry_rollups_bucket", "bucket"),
    )

    id: Mapped[int] = mapped_column(_ROW_ID, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(300), default="")
    bucket: Mapped[datetime] = mapped_column()
    windows: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_weight: Mapped[int] = mapped_column(BigInteger, default=0)
    p50_sum: Mapped[float] = mapped_column(Float, default=0.0)
    p95_sum: Mapped[float] = mapped_column(Float, default=0.0)
    p99_sum: Mapped[float] = mapped_column(Float, default=0.0)
    p95_max: Mapped[float | None] = mapped_column(Float)
    offload_weight: Mapped[int] = mapped_column(BigInteger, default=0)
    offload_sum: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_sum: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_n: Mapped[int] = mapped_column(Integer, default=0)
    memory_max: Mapped[float | None] = mapped_column(Float)
    temperature_max: Mapped[float | None] = mapped_column(Float)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    classes: Mapped[dict[str, Any] | None] = mapped_column()
    outputs: Mapped[dict[str, Any] | None] = mapped_column()


class TelemetryRollupState(Base):
    """Where the rollup job stands: the highest raw telemetry id it has summed (one row, ``name``
    ``"rollup"``); a job on any replica locks it for its pass."""

    __tablename__ = "telemetry_rollup_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
