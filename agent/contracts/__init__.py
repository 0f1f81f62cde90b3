"""Wire contracts shared by the device, the server, the compilers and the CLI.

These modules import nothing but the standard library (no numpy, no pydantic) and do no file or
network I/O of their own (the registries read installed packages' entry-point metadata through
``importlib.metadata``), so a device that installs only ``edgefleet[agent]`` carries them, and every other
part imports them from here. Each contract is a frozen dataclass read and written by one codec
(:mod:`agent.contracts.codec`): ``from_dict``/``to_dict``, and ``from_json``/``to_json`` for
whole messages; a bad payload raises :class:`ContractError` naming the message and the field.

- :mod:`agent.contracts.manifest`: the bundle manifest (what a compiled bundle holds).
- :mod:`agent.contracts.state`: desired state (server → device), reported state and online status
  (device → server), the update states and the error codes a device reports.
- :mod:`agent.contracts.policy`: the serving and offload policies of a desired state.
- :mod:`agent.contracts.registration`: the registration request and the server's answer.
- :mod:`agent.contracts.telemetry`: what a device measured over a window.
- :mod:`agent.contracts.topics`: MQTT topic names.
- :mod:`agent.contracts.names`, :mod:`agent.contracts.plugins`: the built-in target and runtime
  names and the registries that add plug-ins to them.
"""

from agent.contracts.codec import Contract
from agent.contracts.errors import ContractError
from agent.contracts.manifest import (
    MANIFEST_SCHEMA,
    FileEntry,
    Intake,
    Manifest,
    SelfTest,
    TensorSpec,
    Validation,
)
from agent.contracts.policy import OffloadPolicy, ServingPolicy
from agent.contracts.registration import EnrollmentRequest, EnrollmentResponse, MqttSettings, RenewalResponse
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
from agent.contracts.telemetry import TELEMETRY_SCHEMA, Latency, OutputStats, Telemetry
from agent.contracts.topics import TOPIC_ROOT, DeviceTopic, device_topic, server_subscriptions

__all__ = [
    "DESIRED_SCHEMA",
    "MANIFEST_SCHEMA",
    "REPORTED_SCHEMA",
    "STATUS_SCHEMA",
    "TELEMETRY_SCHEMA",
    "TOPIC_ROOT",
    "Contract",
    "ContractError",
    "DesiredModel",
    "DesiredState",
    "DeviceTopic",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "ErrorCode",
    "FileEntry",
    "Intake",
    "Latency",
    "Manifest",
    "MqttSettings",
    "OffloadPolicy",
    "OutputStats",
    "RenewalResponse",
    "ReportedError",
    "ReportedState",
    "SelfTest",
    "ServingPolicy",
    "Status",
    "Telemetry",
    "TensorSpec",
    "UpdateState",
    "Validation",
    "device_topic",
    "server_subscriptions",
]
