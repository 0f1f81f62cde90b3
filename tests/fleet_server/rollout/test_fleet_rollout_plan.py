"""The rollout decisions as pure functions: plain facts and a clock value in, the effects to apply
out (desired states to store and publish, device rows, the deployment's state). No database,
broker or clock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.contracts import DesiredModel, ReportedError, ReportedState, UpdateState
from fleet_server.build_settings import BuildKey
from fleet_server.rollout import (
    Build,
    DeploymentFacts,
    DeviceFacts,
    DeviceRow,
    RolloutSpec,
    next_desired,
    plan_deployment,
    plan_device,
)
from fleet_server.states import BundleStatus as B
from fleet_server.states import DeploymentState as D
from fleet_server.states import DeviceRolloutState as S

REF = "digits:1.0"
X86 = BuildKey("onnx-x86", "int8", "int8")
ARM = BuildKey("tflite-arm", "int8", "int8")
NOW = 1_700_000_000.0
INSTANT = RolloutSpec(health_window_s=0)  # HEALTHY as soon as committed


def seen(row: DeviceRow) -> tuple[int | None, S, str | None]:
    """What these tests look at in a row: generation, state, active model."""
    return (row.generation, row.state, row.active)


def model(target: str = "onnx-x86") -> DesiredModel:
    path = f"digits/1.0/{target}-int8-aaaaaaaa.tar"
    return DesiredModel("digits", "1.0", target, "int8", path, f"/artifacts/{path}", 10, "a" * 64)


def ready(target: str = "onnx-x86") -> Build:
    return Build(target, B.READY, model=model(target))


def device(device_id: str, build: BuildKey | None = X86, **kw: Any) -> DeviceFacts:
    return DeviceFacts(device_id, build, **kw)


def committed(device_id: str, generation: int, active: str = REF) -> ReportedState:
    return ReportedState(device_id, generation, UpdateState.COMMITTED, active=active, ts=1.0)


def test_nothing_is_written_until_every_compile_the_deployment_needs_is_ready() -> None:
    dep = DeploymentFacts(7, REF)
    members = [device("a"), device("b", ARM)]
    plan = plan_deployment(dep, members, {X86: ready(), ARM: Build("tflite-arm", B.COMPILING)}, NOW)
    assert plan.desired == ()
    assert [(d.device_id, d.row, d.moved) for d in plan.devices] == [
        ("a", DeviceRow(None, S.PENDING), True),  # new rows count as moved (stamped)
        ("b", DeviceRow(None, S.PENDING), True),
    ]
    assert (plan.state, plan.error, plan.changed) == (D.COMPILING, None, True)


def test_once_ready_each_device_gets_the_next_generation_in_member_order() -> None:
    dep = DeploymentFacts(7, REF, D.COMPILING)
    members = [device("a", desired_generation=4), device("b", ARM), device("odd", None)]
    plan = plan_deployment(dep, members, {X86: ready(), ARM: ready("tflite-arm")}, NOW)
    assert [
        (ds.device_id, ds.generation, ds.deployment_id, ds.models, ds.issued_at) for ds in plan.desired
    ] == [
        ("a", 5, "7", (model(),), NOW),
        ("b", 1, "7", (model("tflite-arm"),), NOW),
    ]
    rows = {d.device_id: seen(d.row) for d in plan.devices}
    assert rows == {
        "a": (5, S.NOTIFIED, None),
        "b": (1, S.NOTIFIED, None),
        "odd": (None, S.PENDING, None),  # unknown profile: no bundle, no desired state
    }
    assert (plan.state, plan.changed) == (D.RUNNING, True)


def test_a_device_already_told_keeps_its_generation_and_reports_drive_the_states() -> None:
    told = next_desired("a", 2, "7", model(), 1.0)
    dep = DeploymentFacts(7, REF, D.RUNNING, rows={"a": DeviceRow(None, S.PENDING)}, spec=INSTANT)
    a = device("a", desired=told, desired_generation=3, reported=committed("a", 3), active=REF)
    plan = plan_deployment(dep, [a], {X86: ready()}, NOW)
    assert plan.desired == ()  # same deployment, same bundle: no new generation
    (d,) = plan.devices
    assert seen(d.row) == (3, S.HEALTHY, REF) and d.moved
    assert (plan.state, plan.error, plan.changed) == (D.SUCCEEDED, None, True)


def test_a_pass_with_nothing_new_changes_nothing() -> None:
    told = next_desired("a", 0, "7", model(), 1.0)
    rows = {"a": DeviceRow(1, S.NOTIFIED, wave=0, notified_at=NOW - 1)}
    dep = DeploymentFacts(7, REF, D.RUNNING, rows=rows, wave=0)
    plan = plan_deployment(dep, [device("a", desired=told, desired_generation=1)], {X86: ready()}, NOW)
    assert plan.desired == () and not plan.changed
    assert [(d.row, d.moved) for d in plan.devices] == [(rows["a"], False)]


def test_devices_that_left_lose_their_rows() -> None:
    dep = DeploymentFacts(7, REF, D.RUNNING, rows={"gone": DeviceRow(1, S.HEALTHY), "a": DeviceRow()})
    plan = plan_deployment(dep, [device("a")], {X86: ready()}, NOW)
    assert plan.removed == ("gone",)
    assert [d.device_id for d in plan.devices] == ["a"]


def test_a_failed_compile_fails_the_deployment_and_nothing_is_sent() -> None:
    dep = DeploymentFacts(7, REF, D.COMPILING)
    builds = {X86: ready(), ARM: Build("tflite-arm", B.FAILED, "tflite-arm: onnx2tf timed out")}
    plan = plan_deployment(dep, [device("a"), device("b", ARM)], builds, NOW)
    assert plan.desired == ()
    assert (plan.state, plan.error) == (D.FAILED, "tflite-arm: onnx2tf timed out")
    no_message = plan_deployment(dep, [device("b", ARM)], {ARM: Build("tflite-arm", B.FAILED)}, NOW)
    assert no_message.error == "tflite-arm: failed"


def test_a_failure_over_the_gate_halts_and_rolls_back_every_touched_device() -> None:
    told = next_desired("a", 0, "7", model(), 1.0)
    err = ReportedError("HASH_MISMATCH", "sha256 differs")
    failed = ReportedState("b", 1, UpdateState.IDLE, error=err, ts=1.0)
    old = (DesiredModel("digits", "0.9", "onnx-x86", "int8", "p", "/artifacts/p", 1, "b" * 64),)
    rows = {
        "a": DeviceRow(1, S.INSTALLING, wave=0, notified_at=NOW - 5, previous=old),
        "b": DeviceRow(1, S.NOTIFIED, wave=0, notified_at=NOW - 5, previous=old),
    }
    dep = DeploymentFacts(7, REF, D.RUNNING, rows=rows, spec=INSTANT, wave=0)
    members = [
        device("a", desired=told, desired_generation=1, reported=committed("a", 1), active=REF),
        device("b", desired=told, desired_generation=1, reported=failed),
    ]
    plan = plan_deployment(dep, members, {X86: ready()}, NOW)
    assert plan.state == D.HALTED and plan.rollback
    assert plan.error is not None and "1 failed" in plan.error and "wave 1 of 1" in plan.error
    # both touched devices are told the previous model again, one generation more
    assert [(d.device_id, d.generation, d.models) for d in plan.desired] == [("a", 2, old), ("b", 2, old)]
    by_id = {d.device_id: d.row for d in plan.devices}
    assert by_id["b"].state == S.FAILED and by_id["b"].error == err  # its own failure stays shown
    assert by_id["a"].state == S.NOTIFIED and by_id["a"].rolled_back


def test_plan_device_moves_a_device_from_an_older_deployment_on_by_one_generation() -> None:
    older = next_desired("a", 6, "3", model(), 1.0)
    a = device("a", desired=older, desired_generation=7, reported=committed("a", 7), active=REF)
    d = plan_device(8, REF, a, None, model(), NOW)
    assert d.desired is not None and (d.desired.generation, d.desired.deployment_id) == (8, "8")
    # the report is about generation 7: the device has not picked deployment 8 up yet
    assert seen(d.row) == (8, S.NOTIFIED, REF) and d.moved
    waiting = plan_device(8, REF, a, DeviceRow(), None, NOW)  # no model yet: nothing to tell it
    assert waiting.desired is None and seen(waiting.row) == (None, S.PENDING, REF) and waiting.moved


def test_the_rollout_core_loads_no_database_broker_or_web_code() -> None:
    code = (
        "import sys, fleet_server.rollout; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'paho', 'fastapi', 'alembic'}))"
    )
    root = str(Path(__file__).resolve().parents[3])  # this tree's code, not an installed copy
    env = {**os.environ, "PYTHONPATH": root}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=root
    )
    assert out.stdout.strip() == "[]"
