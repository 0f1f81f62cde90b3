"""The rollout core (pure): plans and states over plain data and a clock value. No database,
broker or clock here; the controller (:mod:`fleet_server.controller`) reads the facts, calls these
functions and writes and publishes what they return.

- :mod:`.claims`: which deployment each device follows.
- :mod:`.device_state`: what a device's reported state means for its deployment.
- :mod:`.deployment_state`: the error a deployment shows for failed compiles.
- :mod:`.desired`: when a device gets a new desired state, and what it is.
- :mod:`.facts`: the plain snapshots the decisions read.
- :mod:`.plan`: the per-device and per-deployment decisions and the effects they return.
- :mod:`.policy`: a group's serving and offload policy and what its devices are told.
- :mod:`.spec`: how a deployment rolls out (waves, gates, timers).
- :mod:`.waves`: the stable device order and which wave each device is in.
- :mod:`.gates`: the install and model-quality gates of the opened waves.
"""

from fleet_server.rollout.claims import LiveDeployment, claims
from fleet_server.rollout.deployment_state import compile_failure_message
from fleet_server.rollout.desired import needs_write, next_desired
from fleet_server.rollout.device_state import device_state
from fleet_server.rollout.facts import Build, DeploymentFacts, DeviceFacts, DeviceRow
from fleet_server.rollout.gates import Outcomes, Quality, Verdict, judge, psi
from fleet_server.rollout.plan import (
    DeploymentPlan,
    DeviceDecision,
    ReportPlan,
    plan_deployment,
    plan_device,
    plan_report,
)
from fleet_server.rollout.policy import GroupOffload, GroupPolicy, device_offload
from fleet_server.rollout.spec import QualityGates, RolloutSpec, WaveSize, parse_ramp, parse_waves
from fleet_server.rollout.waves import assign_waves, device_rank

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
    "Outcomes",
    "Quality",
    "QualityGates",
    "ReportPlan",
    "RolloutSpec",
    "Verdict",
    "WaveSize",
    "assign_waves",
    "claims",
    "compile_failure_message",
    "device_offload",
    "device_rank",
    "device_state",
    "judge",
    "needs_write",
    "next_desired",
    "parse_ramp",
    "parse_waves",
    "plan_deployment",
    "plan_device",
    "plan_report",
    "psi",
]
