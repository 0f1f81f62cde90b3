"""The deploy --wait decision logic, without a server or a clock."""

from __future__ import annotations

from typing import Any

from edgectl.watch import failures, is_settled, watch


def dep(state: str, *device_states: str, compile_status: str = "ready") -> dict[str, Any]:
    return {
        "id": "7",
        "state": state,
        "compile": [{"target": "onnx-x86", "precision": "int8", "status": compile_status, "error": "boom"}],
        "devices": [
            {"device_id": f"d{i}", "state": s, "error": {"code": "LOAD_FAILED", "message": "no"}}
            for i, s in enumerate(device_states)
        ],
    }


def test_settled_when_the_server_decides_or_a_compile_failed() -> None:
    assert not is_settled(dep("RUNNING", "HEALTHY", "DOWNLOADING"))
    assert is_settled(dep("SUCCEEDED", "HEALTHY"))
    assert is_settled(dep("SUPERSEDED", "DOWNLOADING"))
    assert is_settled(dep("ROLLED_BACK", "ROLLED_BACK", "FAILED"))
    # A failed device alone is the gate's to judge, not the watcher's.
    assert not is_settled(dep("RUNNING", "FAILED", "DOWNLOADING"))
    # Halted: decided, unless a roll-back is still under way.
    assert is_settled(dep("HALTED", "FAILED"))
    assert not is_settled({**dep("HALTED", "FAILED", "NOTIFIED"), "rollout": {"rollback": True}})
    assert is_settled(dep("COMPILING", compile_status="failed"))
    # Every device healthy is not yet success: the server's SUCCEEDED is the verdict.
    assert not is_settled(dep("RUNNING", "HEALTHY", "HEALTHY"))


def test_failures_name_the_target_or_device_and_the_reason() -> None:
    assert failures(dep("FAILED", "FAILED", "HEALTHY", compile_status="failed")) == [
        "compile onnx-x86/int8: boom",
        "device d0: LOAD_FAILED: no",
    ]
    assert failures(dep("RUNNING", "HEALTHY")) == []


def test_watch_polls_until_settled_and_times_out_on_a_fake_clock() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    frames = iter([dep("RUNNING", "PENDING"), dep("RUNNING", "INSTALLING"), dep("SUCCEEDED", "HEALTHY")])
    seen: list[str] = []
    result = watch(lambda: next(frames), 60, 2, lambda: now[0], sleep, lambda d: seen.append(d["state"]))
    assert result.succeeded and not result.timed_out
    assert seen == ["RUNNING", "RUNNING", "SUCCEEDED"] and slept == [2, 2]

    now[0], slept[:] = 0.0, []
    stuck = watch(lambda: dep("RUNNING", "PENDING"), 5, 2, lambda: now[0], sleep)
    assert stuck.timed_out and not stuck.succeeded
    assert slept == [2, 2, 1]
