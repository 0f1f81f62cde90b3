"""A group's serving and offload policy in the desired states the rollout core builds (pure: no
database, broker or clock)."""

from __future__ import annotations

import pytest

from agent.contracts import ContractError, DesiredModel, ReportedState, UpdateState
from agent.contracts.policy import OffloadPolicy, ServingPolicy
from fleet_server.build_settings import BuildKey
from fleet_server.rollout import (
    Build,
    DeploymentFacts,
    DeviceFacts,
    GroupOffload,
    GroupPolicy,
    RolloutSpec,
    device_offload,
    plan_deployment,
)
from fleet_server.states import BundleStatus as B
from fleet_server.states import DeviceRolloutState as S

REF = "digits:1.0"
X86 = BuildKey("onnx-x86", "int8", "int8")
NOW = 1_700_000_000.0
CLOUD = "https://fleet.example"
FAST = GroupPolicy(ServingPolicy(latency_budget_ms=50, max_batch_size=4), GroupOffload(True, budget=0.3))


def model() -> DesiredModel:
    path = "digits/1.0/onnx-x86-int8-aaaaaaaa.tar"
    return DesiredModel("digits", "1.0", "onnx-x86", "int8", path, f"/artifacts/{path}", 10, "a" * 64)


BUILDS = {X86: Build("onnx-x86", B.READY, model=model())}


def test_a_new_desired_state_carries_the_group_policy_with_the_cloud_url_filled_in() -> None:
    dep = DeploymentFacts(7, REF, policy=FAST, cloud_url=CLOUD + "/")
    (desired,) = plan_deployment(dep, [DeviceFacts("a", X86)], BUILDS, NOW).desired
    assert desired.serving == ServingPolicy(latency_budget_ms=50, max_batch_size=4)
    assert desired.offload == OffloadPolicy(True, CLOUD, 0.3)
    assert desired.to_dict()["offload"] == {"enabled": True, "endpoint_url": CLOUD, "budget": 0.3}


def test_a_policy_change_alone_makes_one_generation_more_for_every_member() -> None:
    old = DeploymentFacts(7, REF, cloud_url=CLOUD)
    devs = [DeviceFacts("a", X86), DeviceFacts("b", X86)]
    first = plan_deployment(old, devs, BUILDS, NOW)
    rows = {d.device_id: d.row for d in first.devices}
    told = [DeviceFacts(d.device_id, X86, desired=d, desired_generation=d.generation) for d in first.desired]
    # Same policy again: nothing to write.
    again = plan_deployment(DeploymentFacts(7, REF, rows=rows, cloud_url=CLOUD), told, BUILDS, NOW + 1)
    assert again.desired == ()
    changed = DeploymentFacts(7, REF, rows=rows, policy=FAST, cloud_url=CLOUD)
    plan = plan_deployment(changed, told, BUILDS, NOW + 2)
    assert [(d.device_id, d.generation, d.deployment_id) for d in plan.desired] == [
        ("a", 2, "7"),
        ("b", 2, "7"),
    ]
    assert all(d.models == (model(),) and d.serving.max_batch_size == 4 for d in plan.desired)
    assert [(d.row.generation, d.row.state) for d in plan.devices] == [(2, S.NOTIFIED), (2, S.NOTIFIED)]


def test_the_device_is_healthy_again_once_it_commits_the_policy_generation() -> None:
    first = plan_deployment(DeploymentFacts(7, REF), [DeviceFacts("a", X86)], BUILDS, NOW)
    (d1,) = first.desired
    rows = {"a": first.devices[0].row}
    report = ReportedState("a", 2, UpdateState.COMMITTED, active=REF, ts=1.0)
    dev = DeviceFacts("a", X86, desired=d1, desired_generation=1, reported=report, active=REF)
    plan = plan_deployment(
        DeploymentFacts(7, REF, rows=rows, policy=FAST, cloud_url=CLOUD, spec=RolloutSpec(health_window_s=0)),
        [dev],
        BUILDS,
        NOW,
    )
    assert plan.desired[0].generation == 2
    assert plan.devices[0].row.state == S.HEALTHY


def test_cloud_offload_without_a_public_url_names_the_server_relative_to_the_device() -> None:
    assert device_offload(GroupOffload(True, budget=0.3), None) == OffloadPolicy(True, "/", 0.3)
    assert device_offload(GroupOffload(True, budget=0.3), CLOUD + "/") == OffloadPolicy(True, CLOUD, 0.3)


def test_an_explicit_endpoint_is_passed_on_as_is() -> None:
    triton = "http://triton.local:8000"
    assert device_offload(GroupOffload(True, triton), CLOUD) == OffloadPolicy(True, triton)
    assert device_offload(GroupOffload(), CLOUD) == OffloadPolicy()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"budget": 1.5}, "offload.budget: must be between 0 and 1"),
        ({"enabled": True, "endpoint_url": "triton:8000"}, "offload.endpoint_url: not an http\\(s\\) URL"),
        ({"enabled": "yes"}, "offload.enabled"),
    ],
)
def test_a_bad_group_offload_is_refused_naming_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        GroupOffload.from_dict(data)


def test_enabled_without_an_endpoint_is_a_valid_group_offload_meaning_the_cloud() -> None:
    assert GroupOffload.from_dict({"enabled": True}).uses_cloud
    assert not GroupOffload.from_dict({"enabled": True, "endpoint_url": CLOUD}).uses_cloud
