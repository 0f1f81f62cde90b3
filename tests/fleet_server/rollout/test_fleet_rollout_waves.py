"""Staged rollouts in the pure core, on a fake clock: waves, gates, timers, roll-back, and the
one-report decision. No database, broker or clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.contracts import ContractError, DesiredModel, ReportedError, ReportedState, UpdateState
from fleet_server.build_settings import BuildKey
from fleet_server.rollout import (
    Build,
    DeploymentFacts,
    DeviceFacts,
    Outcomes,
    Quality,
    QualityGates,
    RolloutSpec,
    WaveSize,
    assign_waves,
    judge,
    parse_ramp,
    parse_waves,
    plan_deployment,
    plan_report,
    psi,
)
from fleet_server.rollout.plan import DeploymentPlan, wave_counts
from fleet_server.states import DEPLOYMENT_MOVES, BundleStatus, IllegalMove, check_device_move
from fleet_server.states import DeploymentState as D
from fleet_server.states import DeviceRolloutState as S

X86 = BuildKey("onnx-x86", "int8", "int8")
NEW = "digits:2"


def model(version: str) -> DesiredModel:
    path = f"digits/{version}/onnx-x86-int8-aaaaaaaa.tar"
    return DesiredModel("digits", version, "onnx-x86", "int8", path, f"/artifacts/{path}", 10, "a" * 64)


OLD_MODEL = model("1")
BUILDS = {X86: Build("onnx-x86", BundleStatus.READY, model=model("2"))}


class Fleet:
    """A group on a fake clock: devices that run digits:1, the deployment's stored facts, and
    helpers that apply a plan as the controller would and make devices report."""

    def __init__(self, n: int, spec: RolloutSpec) -> None:
        old = _desired("x", 1, OLD_MODEL)
        self.devices = {
            f"d{i:02d}": DeviceFacts(f"d{i:02d}", X86, desired=replace(old, device_id=f"d{i:02d}"),
                                     desired_generation=1, active="digits:1")
            for i in range(n)
        }  # fmt: skip
        self.dep = DeploymentFacts(9, NEW, spec=spec)
        self.now = 1000.0
        self.told: dict[str, list[int]] = {d: [] for d in self.devices}

    def decide(self) -> DeploymentPlan:
        plan = plan_deployment(self.dep, list(self.devices.values()), BUILDS, self.now)
        for d in plan.devices:
            if d.desired is not None:
                self.devices[d.device_id] = replace(
                    self.devices[d.device_id], desired=d.desired, desired_generation=d.desired.generation
                )
                self.told[d.device_id].append(d.desired.generation)
        self.dep = replace(
            self.dep,
            state=plan.state,
            error=plan.error,
            rows={d.device_id: d.row for d in plan.devices},
            wave=plan.wave,
            wave_ended_at=plan.wave_ended_at,
            rollback=plan.rollback,
        )
        return plan

    def report(
        self, device_id: str, state: UpdateState, active: str | None, error: str | None = None
    ) -> None:
        dev = self.devices[device_id]
        rs = ReportedState(device_id, dev.desired_generation, state, active=active,
                           error=ReportedError(error, "boom") if error else None)  # fmt: skip
        self.devices[device_id] = replace(dev, reported=rs, active=active)

    def commit_all_told(self, failing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        for d, row in self.dep.rows.items():
            if row.generation is not None and row.state not in (S.HEALTHY, S.FAILED) and not row.rolled_back:
                if d in failing:
                    self.report(d, UpdateState.IDLE, "digits:1", "SELF_TEST_FAILED")
                else:
                    self.report(d, UpdateState.COMMITTED, NEW)

    def states(self) -> dict[str, S]:
        return {d: r.state for d, r in self.dep.rows.items()}


def _desired(device_id: str, generation: int, m: DesiredModel):  # type: ignore[no-untyped-def]
    from agent.contracts import DesiredState

    return DesiredState(device_id=device_id, generation=generation, models=(m,), deployment_id="1")


# -- spec ---------------------------------------------------------------------------------------


def test_waves_parse_shares_and_counts_and_refuse_nonsense() -> None:
    assert parse_waves("1%,10%, 50% ,100%") == tuple(WaveSize(percent=p) for p in (1, 10, 50, 100))
    assert parse_waves("5,20,100%") == (WaveSize(count=5), WaveSize(count=20), WaveSize(percent=100))
    for bad in ("", "0%", "120%", "ten", "5,,6", "-3"):
        with pytest.raises(ContractError):
            parse_waves(bad)
    assert parse_ramp("1,2") == (1, 2.0)
    with pytest.raises(ContractError):
        parse_ramp("2")
    with pytest.raises(ContractError):
        RolloutSpec(max_failure_rate=1.5).check("rollout")


def test_bounds_are_cumulative_nonempty_and_end_with_the_group() -> None:
    spec = RolloutSpec(waves=parse_waves("1%,10%,50%,100%"))
    assert spec.bounds(20) == (1, 2, 10, 20)  # 1% of 20 rounds up to one canary
    assert spec.bounds(1000) == (10, 100, 500, 1000)
    assert spec.bounds(3) == (1, 2, 3)  # waves that would add nobody are dropped
    assert RolloutSpec(waves=parse_waves("5,20")).bounds(100) == (5, 20, 100)  # the rest last
    ramp = RolloutSpec(ramp_base=1, ramp_factor=2)
    assert ramp.bounds(20) == (1, 2, 4, 8, 16, 20)


def test_the_spec_round_trips_through_its_json() -> None:
    spec = RolloutSpec(waves=parse_waves("10%,100%"), bake_time_s=30, gates=QualityGates(max_error_rate=0.02))
    assert RolloutSpec.from_dict(spec.to_dict()) == spec
    assert RolloutSpec.from_dict({}) == RolloutSpec()


def test_device_order_is_stable_and_not_by_name() -> None:
    ids = [f"cam-{i:03d}" for i in range(100)]
    spec = RolloutSpec(waves=parse_waves("10%,100%"))
    first = assign_waves(spec, ids, {})
    assert assign_waves(spec, list(reversed(ids)), {}) == first  # the same canaries every time
    canaries = sorted(d for d, w in first.items() if w == 0)
    assert len(canaries) == 10 and canaries != ids[:10]
    # a device joining later goes into the last wave; the others keep theirs
    later = assign_waves(spec, [*ids, "cam-new"], first)
    assert later["cam-new"] == 1 and all(later[d] == first[d] for d in ids)


# -- gates ----------------------------------------------------------------------------------------


def test_the_failure_gate_waits_for_min_executed_then_judges_the_share() -> None:
    spec = RolloutSpec(max_failure_rate=0.2, min_executed=5)
    assert not judge(spec, Outcomes(healthy=0, failed=3)).failed  # only 3 finished: not judged yet
    assert not judge(spec, Outcomes(healthy=4, failed=1)).failed  # 20% is allowed
    v = judge(spec, Outcomes(healthy=3, failed=1, timed_out=1))
    assert v.failed and "1 failed and 1 timed out of 5 devices (40% > 20% allowed)" in v.reasons[0]


def test_quality_gates_against_the_previous_version() -> None:
    gates = QualityGates(max_error_rate=0.05, max_p95_regression=1.5, max_offload_ratio=0.3,
                         max_prediction_psi=0.25, min_requests=10)  # fmt: skip
    spec = RolloutSpec(gates=gates)
    old = Quality(requests=1000, errors=1, p95_ms=10.0, class_counts={"0": 500, "1": 500})
    good = Quality(requests=800, errors=2, p95_ms=12.0, offload_ratio=0.1, class_counts={"0": 390, "1": 410})
    v = judge(spec, Outcomes(healthy=3), good, old)
    assert not v.failed and set(v.checked) >= {
        "error_rate",
        "p95_regression",
        "offload_ratio",
        "prediction_psi",
    }
    slow = replace(good, p95_ms=20.0)
    assert any("2.00x the previous" in r for r in judge(spec, Outcomes(), slow, old).reasons)
    shifted = replace(good, class_counts={"0": 760, "1": 40})
    assert any("PSI" in r for r in judge(spec, Outcomes(), shifted, old).reasons)
    erring = replace(good, errors=100)
    assert any("error rate 12.5% > 5.0%" in r for r in judge(spec, Outcomes(), erring, old).reasons)
    too_few = Quality(requests=5, errors=5)
    assert not judge(spec, Outcomes(), too_few, old).failed  # below min_requests: wait


def test_psi_is_zero_for_equal_distributions_and_grows_with_shift() -> None:
    assert psi({"a": 50, "b": 50}, {"a": 5, "b": 5}) == pytest.approx(0.0)
    assert psi({"a": 50, "b": 50}, {"a": 60, "b": 40}) < 0.1 < psi({"a": 50, "b": 50}, {"a": 90, "b": 10})
    assert psi({}, {"a": 1}) is None


# -- the rollout ----------------------------------------------------------------------------------


def test_a_good_model_rolls_through_four_waves_and_succeeds() -> None:
    fl = Fleet(20, RolloutSpec(waves=parse_waves("1%,10%,50%,100%"), health_window_s=0))
    sizes = []
    for _ in range(10):
        plan = fl.decide()
        sizes.append(sum(1 for r in fl.dep.rows.values() if r.generation is not None))
        if plan.state == D.SUCCEEDED:
            break
        fl.commit_all_told()
        fl.now += 1
    assert plan.state == D.SUCCEEDED and plan.waves == 4
    assert sizes[:4] == [1, 2, 10, 20]  # each wave opens only once the one before ended
    assert set(fl.states().values()) == {S.HEALTHY}
    assert all(len(g) == 1 for g in fl.told.values())  # one new generation per device


def test_a_failure_in_the_canary_wave_halts_rolls_back_and_never_reaches_the_rest() -> None:
    fl = Fleet(20, RolloutSpec(waves=parse_waves("10%,100%"), health_window_s=0))
    fl.decide()
    canaries = {d for d, r in fl.dep.rows.items() if r.generation is not None}
    assert len(canaries) == 2
    fl.commit_all_told(failing={min(canaries)})
    plan = fl.decide()
    assert plan.state == D.HALTED and plan.rollback and "wave 1 of 2" in (plan.error or "")
    # only the canaries were ever told anything; each is told digits:1 again
    assert {d for d, g in fl.told.items() if g} == canaries
    assert all(d.models == (OLD_MODEL,) for d in plan.desired)
    for d in canaries:
        fl.report(d, UpdateState.COMMITTED, "digits:1")
    final = fl.decide()
    assert final.state == D.ROLLED_BACK
    assert {fl.states()[d] for d in canaries} == {S.FAILED, S.ROLLED_BACK}


def test_no_auto_rollback_halts_and_leaves_devices_where_they_are() -> None:
    fl = Fleet(4, RolloutSpec(health_window_s=0, auto_rollback=False))
    fl.decide()
    fl.commit_all_told(failing={"d00"})
    plan = fl.decide()
    assert plan.state == D.HALTED and not plan.rollback and plan.desired == ()


def test_a_device_that_never_answers_times_out_and_counts_against_the_gate() -> None:
    fl = Fleet(3, RolloutSpec(health_window_s=0, device_timeout_s=60, max_failure_rate=0.5))
    plan = fl.decide()
    assert plan.due == pytest.approx(fl.now + 60)  # the controller looks again then
    fl.report("d00", UpdateState.COMMITTED, NEW)
    fl.report("d01", UpdateState.COMMITTED, NEW)
    fl.now += 61
    plan = fl.decide()
    assert fl.states()["d02"] == S.TIMED_OUT and fl.dep.rows["d02"].error is not None
    assert plan.state == D.SUCCEEDED  # 1 of 3 is within the 50% allowed


def test_healthy_only_after_the_health_window() -> None:
    fl = Fleet(1, RolloutSpec(health_window_s=30))
    fl.decide()
    fl.report("d00", UpdateState.COMMITTED, NEW)
    plan = fl.decide()
    assert fl.states()["d00"] == S.INSTALLING and plan.state == D.RUNNING
    assert plan.due == pytest.approx(fl.now + 30)
    fl.now += 30
    assert fl.decide().state == D.SUCCEEDED and fl.states()["d00"] == S.HEALTHY


def test_bake_time_and_pause_hold_the_next_wave() -> None:
    fl = Fleet(10, RolloutSpec(waves=parse_waves("1,100%"), health_window_s=0, bake_time_s=100))
    fl.decide()
    fl.commit_all_told()
    plan = fl.decide()
    assert plan.wave == 0 and plan.due == pytest.approx(fl.now + 100)  # baking
    fl.dep = replace(fl.dep, state=D.PAUSED)
    fl.now += 200
    assert fl.decide().wave == 0  # paused: no new wave, even after the bake
    fl.dep = replace(fl.dep, state=D.RUNNING)
    assert fl.decide().wave == 1


def test_max_per_minute_spreads_the_notifications() -> None:
    fl = Fleet(10, RolloutSpec(health_window_s=0, max_per_minute=4))
    plan = fl.decide()
    assert len(plan.desired) == 4 and plan.due is not None
    assert len(fl.decide().desired) == 0  # the minute's budget is spent
    fl.now += 61
    assert len(fl.decide().desired) == 4


def test_one_report_is_decided_from_the_counts_alone() -> None:
    fl = Fleet(50, RolloutSpec(waves=parse_waves("2,100%"), health_window_s=0))
    fl.decide()
    canaries = sorted(d for d, r in fl.dep.rows.items() if r.generation is not None)
    counts = wave_counts(list(fl.dep.rows.values()))
    fl.report(canaries[0], UpdateState.COMMITTED, NEW)
    # the deployment's facts carry no rows here: the decision can't look at the other 49
    bare = replace(fl.dep, rows={})
    dev = fl.devices[canaries[0]]
    first = plan_report(bare, 2, counts, dev, fl.dep.rows[canaries[0]], fl.now)
    assert first.moved and first.row.state == S.HEALTHY and not first.replan
    assert first.counts[0] == {"HEALTHY": 1, "NOTIFIED": 1}
    fl.report(canaries[1], UpdateState.COMMITTED, NEW)
    second = plan_report(bare, 2, first.counts, fl.devices[canaries[1]], fl.dep.rows[canaries[1]], fl.now)
    assert second.replan  # the canary wave ended: the next opens in a full decision
    fl.report(canaries[1], UpdateState.IDLE, "digits:1", "SELF_TEST_FAILED")
    failed = plan_report(bare, 2, first.counts, fl.devices[canaries[1]], fl.dep.rows[canaries[1]], fl.now)
    assert failed.replan and failed.progress is not None and failed.progress.state == D.HALTED


def test_state_tables_refuse_moves_the_rollout_never_makes() -> None:
    assert D.ROLLED_BACK in DEPLOYMENT_MOVES[D.HALTED] and not DEPLOYMENT_MOVES[D.ROLLED_BACK]
    with pytest.raises(IllegalMove):
        check_device_move(S.ROLLED_BACK, S.HEALTHY)
    assert check_device_move(S.TIMED_OUT, S.HEALTHY) == S.HEALTHY  # a late device still counts
