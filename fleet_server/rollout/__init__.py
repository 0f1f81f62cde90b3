"""The rollout core (pure): plans and states over plain data and a clock value. No database,
broker or clock here; the controller (:mod:`fleet_server.controller`) reads the facts, calls these
functions and writes and publishes what they return.

- :mod:`.claims`: which deployment each device follows.
- :mod:`.device_state`: what a device's reported state means for its deployment.
- :mod:`.deployment_state`: a deployment's state and error, and per-state counts.
- :mod:`.desired`: when a device gets a new desired state, and what it is.
- :mod:`.facts`: the plain snapshots the decisions read.
- :mod:`.plan`: the per-device and per-deployment decisions and the effects they return.
- :mod:`.policy`: a group's serving and offload policy and what its devices are told.
"""

from fleet_server.rollout.claims import LiveDeployment, claims
from fleet_server.rollout.deployment_state import (
    compile_failure_message,
    counts,
    deployment_error,
    deployment_state,
)
from fleet_server.rollout.desired import needs_write, next_desired
from fleet_server.rollout.device_state import device_state
from fleet_server.rollout.facts import Build, DeploymentFacts, DeviceFacts, DeviceRow
from fleet_server.rollout.plan import DeploymentPlan, DeviceDecision, plan_deployment, plan_device
from fleet_server.rollout.policy import GroupOffload, GroupPolicy, device_offload

__all__ = [
    "Build",
    "DeploymentFacts",
    "DeploymentPlan",
    "DeviceDecision",
    "DeviceFacts",
    "DeviceRow",
    "GroupOffload",
    "GroupPolicy",
    "LiveDeployment",
    "claims",
    "compile_failure_message",
    "counts",
    "deployment_error",
    "deployment_state",
    "device_offload",
    "device_state",
    "needs_write",
    "next_desired",
    "plan_deployment",
    "plan_device",
]
