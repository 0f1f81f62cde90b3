"""The fleet server's database: schema (with column types for the wire contracts), engine and
sessions, migrations."""

from fleet_server.db.engine import make_engine, make_read_sessions, make_sessions
from fleet_server.db.migrate import current_revision, upgrade
from fleet_server.db.models import (
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
    utcnow,
)

__all__ = [
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
    "current_revision",
    "make_engine",
    "make_read_sessions",
    "make_sessions",
    "upgrade",
    "utcnow",
]
