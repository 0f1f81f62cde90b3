"""The state names the server keeps and shows: bundles, deployments, devices in a deployment."""

from __future__ import annotations

from enum import StrEnum


class BundleStatus(StrEnum):
    """A compile of one model version for one (target, precision, settings key)."""

    PENDING = "pending"
    COMPILING = "compiling"
    READY = "ready"
    FAILED = "failed"


class DeploymentState(StrEnum):
    PENDING = "PENDING"  # created; no member device yet, or not looked at yet
    COMPILING = "COMPILING"  # waiting for the bundles its devices need
    RUNNING = "RUNNING"  # desired states written, devices updating
    SUCCEEDED = "SUCCEEDED"  # every device HEALTHY
    FAILED = "FAILED"  # a needed compile failed, or every device ended and one FAILED
    SUPERSEDED = "SUPERSEDED"  # a newer deployment to the same group took over


class DeviceRolloutState(StrEnum):
    PENDING = "PENDING"
    NOTIFIED = "NOTIFIED"
    DOWNLOADING = "DOWNLOADING"
    INSTALLING = "INSTALLING"
    HEALTHY = "HEALTHY"
    FAILED = "FAILED"


ENDED = frozenset({DeviceRolloutState.HEALTHY, DeviceRolloutState.FAILED})
