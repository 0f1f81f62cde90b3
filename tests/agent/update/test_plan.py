"""What a desired state asks of the device (pure)."""

from __future__ import annotations

from agent.contracts.names import BUILTIN_TARGET_RUNTIME
from agent.contracts.state import DesiredModel, DesiredState, ErrorCode
from agent.update.journal import InstalledModel, Journal
from agent.update.plan import Action, Plan, decide

OK: dict[str, str | None] = {
    "onnxruntime": None,
    "litert": "ai-edge-litert is not installed",
    "tensorrt": "no GPU",
}


def model(
    version: str = "1", sha: str = "a" * 64, target: str = "onnx-x86", key: str = "default"
) -> DesiredModel:
    return DesiredModel("m", version, target, "int8", f"m/{version}/x.tar", "/artifacts/x", 10, sha, key)


def plan(
    desired: DesiredState,
    journal: Journal | None = None,
    target: str = "onnx-x86",
    runtimes: dict[str, str | None] = OK,
) -> Plan:
    return decide(
        desired,
        device_id="dev-1",
        target=target,
        runtime=BUILTIN_TARGET_RUNTIME[target],
        runtime_problems=runtimes,
        journal=journal or Journal(),
    )


def test_a_new_model_is_installed() -> None:
    p = plan(DesiredState("dev-1", 1, (model(),)))
    assert p.action is Action.UPDATE and p.model == model()


def test_another_devices_state_is_ignored() -> None:
    assert plan(DesiredState("dev-2", 1, (model(),))).action is Action.IGNORE


def test_old_applied_and_failed_generations_are_ignored() -> None:
    j = Journal(generation=5, applied_generation=5, failed_generations=(3, 6))
    assert plan(DesiredState("dev-1", 4, (model(),)), j).action is Action.IGNORE  # older
    assert plan(DesiredState("dev-1", 5, (model(),)), j).action is Action.IGNORE  # applied
    j2 = Journal(generation=6, applied_generation=5, failed_generations=(6,))
    assert plan(DesiredState("dev-1", 6, (model(),)), j2).action is Action.IGNORE  # refused before
    assert plan(DesiredState("dev-1", 7, (model(),)), j2).action is Action.UPDATE


def test_a_generation_that_failed_for_the_network_is_tried_again() -> None:
    j = Journal(generation=4, applied_generation=3)  # failed retryably: not in failed_generations
    assert plan(DesiredState("dev-1", 4, (model(),)), j).action is Action.UPDATE


def test_wrong_target_is_incompatible() -> None:
    p = plan(DesiredState("dev-1", 1, (model(target="tflite-arm"),)))
    assert p.action is Action.REFUSE and p.code is ErrorCode.INCOMPATIBLE
    assert "tflite-arm" in p.reason


def test_missing_runtime_is_reported() -> None:
    p = plan(DesiredState("dev-1", 1, (model(target="tflite-arm"),)), target="tflite-arm")
    assert p.action is Action.REFUSE and p.code is ErrorCode.RUNTIME_UNAVAILABLE
    assert "ai-edge-litert is not installed" in p.reason


def test_unknown_model_key_is_refused() -> None:
    p = plan(DesiredState("dev-1", 1, (model(key="detector"),)))
    assert p.action is Action.REFUSE and p.code is ErrorCode.INCOMPATIBLE and "detector" in p.reason


def test_empty_models_means_unload() -> None:
    assert plan(DesiredState("dev-1", 2, ())).action is Action.UNLOAD


def test_the_active_bundle_is_not_downloaded_again() -> None:
    j = Journal(generation=1, applied_generation=1, active=InstalledModel("m", "1", "a" * 64, "a"))
    assert plan(DesiredState("dev-1", 2, (model(),)), j).action is Action.ALREADY_ACTIVE
    assert plan(DesiredState("dev-1", 2, (model("2", "b" * 64),)), j).action is Action.UPDATE
