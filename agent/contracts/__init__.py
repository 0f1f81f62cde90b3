"""Wire contracts shared by the device, the server, the compilers and the CLI.

These modules import nothing heavier than the standard library, so a device that installs only
``edgefleet[agent]`` carries them, and every other part imports them from here.

- :mod:`agent.contracts.manifest`: the bundle manifest (what a compiled bundle holds).
- :mod:`agent.contracts.topics`: MQTT topic names.
- :mod:`agent.contracts.state`: desired state (server → device), reported state and online status
  (device → server), the update states and the error codes a device reports.
"""

from agent.contracts.errors import ContractError
from agent.contracts.manifest import (
    MANIFEST_SCHEMA,
    FileEntry,
    Manifest,
    SelfTest,
    TensorSpec,
    Validation,
)
from agent.contracts.state import (
    DESIRED_SCHEMA,
    REPORTED_SCHEMA,
    STATUS_SCHEMA,
    DesiredModel,
    DesiredState,
    ErrorCode,
    ReportedError,
    ReportedState,
    Status,
    UpdateState,
)
from agent.contracts.topics import TOPIC_ROOT, DeviceTopic, device_topic, server_subscriptions

__all__ = [
    "DESIRED_SCHEMA",
    "MANIFEST_SCHEMA",
    "REPORTED_SCHEMA",
    "STATUS_SCHEMA",
    "TOPIC_ROOT",
    "ContractError",
    "DesiredModel",
    "DesiredState",
    "DeviceTopic",
    "ErrorCode",
    "FileEntry",
    "Manifest",
    "ReportedError",
    "ReportedState",
    "SelfTest",
    "Status",
    "TensorSpec",
    "UpdateState",
    "Validation",
    "device_topic",
    "server_subscriptions",
]
