"""The fleet server's database: schema (with column types for the wire contracts), engine and
sessions, migrations."""

from fleet_server.db import append_only
from fleet_server.db.append_only import AppendOnlyError
from fleet_server.db.engine import make_engine, make_read_sessions, make_sessions
from fleet_server.db.migrate import current_revision, upgrade
from fleet_server.db.models import (
    AuditEntry,
    Base,
    Bundle,
    Deployment,
    DeploymentDevice,
    Device,
    DeviceCertificate,
    EnrollmentToken,
    Group,
    GroupMember,
    ModelVersion,
    OperatorToken,
    TelemetryRollup,
    TelemetryRollupState,
    TelemetryRow,
    utcnow,
)

append_only.install()

__all__ = [
    "AppendOnlyError",
    "AuditEntry",
    "Base",
    "Bundle",
    "Deployment",
    "DeploymentDevice",
    "Device",
    "DeviceCertificate",
    "EnrollmentToken",
    "Group",
    "GroupMember",
    "ModelVersion",
    "OperatorToken",
    "TelemetryRollup",
    "TelemetryRollupState",
    "TelemetryRow",
    "current_revision",
    "make_engine",
    "make_read_sessions",
    "make_sessions",
    "upgrade",
    "utcnow",
]
