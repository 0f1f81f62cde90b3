"""The rollout decisions (pure): plain facts and a clock value in, the effects to apply out. The
controller stores what a plan says and publishes its desired states; nothing here reads or writes.

Rules:

- Desired states are written only once every compile the deployment needs is ready, so all its
  devices move to the same model; a device with an unknown profile keeps a PENDING row.
- At that point the members are put in waves (:meth:`RolloutSpec.bounds` over the members in
  the stable order of :func:`~fleet_server.rollout.waves.device_rank`); a device that joins
  later goes into the last wave. Only devices of opened waves are told the new model, at most
  ``max_per_minute`` of them a minute.
- A device's state comes from its reported state against the generation it was told
  (:func:`~fleet_server.rollout.device_state.device_state`), then: HEALTHY only once the
  post-switch health window has passed since it committed (INSTALLING until then); in flight
  for longer than the device timeout since it was told: TIMED_OUT.
- The opened waves are judged (:func:`~fleet_server.rollout.gates.judge`) on every decision. A
  failed verdict HALTS the rollout; unless the spec says otherwise it then rolls back: every
  device it told the new model is told its previous models again (one generation more) and is
  ROLLED_BACK once it reports them active. Devices of waves that never opened are never told.
- When every device of the opened waves has ended and the bake time has passed since, the next
  wave opens; after the last one the rollout SUCCEEDED. PAUSED opens no wave.
- A device gets a new desired state (one generation more) when its stored one does not ask for
  what it should run under this deployment with the group's policies
  (:mod:`fleet_server.rollout.policy`), so a policy change alone reaches the devices.
- Devices that left the deployment (left the group, or follow a newer deployment) lose their row.

:func:`plan_deployment` decides a whole deployment (on a start, a membership change, a timer);
:func:`plan_report` decides one device's report from the deployment's counts alone, and says
when the whole deployment must be decided again (a wave ended, a gate failed), so a report costs
O(1) however large the group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from agent.contracts import DesiredModel, DesiredState, ReportedError, UpdateState
from agent.contracts.policy import OffloadPolicy, ServingPolicy
from fleet_server.build_settings import BuildKey
from fleet_server.rollout.deployment_state import compile_failure_message
from fleet_server.rollout.desired import needs_write, next_desired
from fleet_server.rollout.device_state import device_state
from fleet_server.rollout.facts import Build, DeploymentFacts, DeviceFacts, DeviceRow
from fleet_server.rollout.gates import Outcomes, Quality, Verdict, judge
from fleet_server.rollout.policy import device_offload
from fleet_server.rollout.spec import RolloutSpec
from fleet_server.rollout.waves import assign_waves
from fleet_server.states import (
    ADVANCING,
    ENDED,
    IN_FLIGHT,
    ROLLBACK_ENDED,
    BundleStatus,
    check_deployment_move,
    check_device_move,
)
from fleet_server.states import DeploymentState as D
from fleet_server.states import DeviceRolloutState as S

WaveCounts = Mapping[int, Mapping[str, int]]


@dataclass(frozen=True)
class DeviceDecision:
    """What becomes of one device of a deployment: its row afterwards, a new desired state to store
    on the device and publish (``None``: it keeps the one it has), and whether the row's state,
    active model or error moved (so its ``updated_at`` is stamped; a new row always counts)."""

    device_id: str
    row: DeviceRow
    desired: DesiredState | None = None
    moved: bool = False


@dataclass(frozen=True)
class DeploymentPlan:
    """The effects of one decision over a deployment: the member devices' decisions (in the
    members' order), the device rows to drop, the deployment's state, error, wave, the time its
    opened waves all ended (bake start), whether a roll-back is under way, the gates' verdict,
    the per-wave counts, and ``due``: the next time a decision would change on its own (a health
    window or timeout ending, a bake or rate budget passing; ``None``: nothing timed)."""

    devices: tuple[DeviceDecision, ...]
    removed: tuple[str, ...]
    state: D
    error: str | None
    changed: bool
    wave: int = -1
    waves: int = 0
    wave_ended_at: float | None = None
    rollback: bool = False
    verdict: Verdict | None = None
    counts: Mapping[int, Mapping[str, int]] | None = None
    due: float | None = None

    @property
    def desired(self) -> tuple[DesiredState, ...]:
        """The desired states to store and then publish, in order."""
        return tuple(d.desired for d in self.devices if d.desired is not None)


# -- one device -----------------------------------------------------------------------------------


def observe(spec: RolloutSpec, row: DeviceRow, device: DeviceFacts, model_ref: str, now: float) -> DeviceRow:
    """A device's row after what it last reported, at ``now``: its rollout state and error, and
    when it committed the new version (the health window's start)."""
    if row.generation is None:
        return replace(row, state=S.PENDING, active=device.active)
    rep = device.reported
    if row.rolled_back:
        prev = row.previous[0].ref if row.previous else None
        state, error = row.state, row.error
        if rep is not None and rep.generation >= row.generation:
            if rep.error is not None and state != S.FAILED:
                state, error = S.FAILED, rep.error
            elif (
                state != S.FAILED  # its own failure stays what it shows
                and rep.error is None
                and rep.state in (UpdateState.COMMITTED, UpdateState.IDLE)
                and rep.active == prev
            ):
                state = S.ROLLED_BACK
        if state not in ROLLBACK_ENDED and _timed_out(spec, row, now):
            state, error = S.TIMED_OUT, _timeout_error(spec, "roll-back")
        return replace(row, state=check_device_move(row.state, state), active=device.active, error=error)
    state, error = device_state(rep, row.generation, model_ref)
    committed_at = None
    if state == S.HEALTHY:
        committed_at = row.committed_at if row.committed_at is not None else now
        if now < committed_at + spec.health_window_s:
            state = S.INSTALLING
    if state in IN_FLIGHT and _timed_out(spec, row, now):
        state, error = S.TIMED_OUT, _timeout_error(spec, "update")
    return replace(
        row,
        state=check_device_move(row.state, state),
        active=device.active,
        error=error,
        committed_at=committed_at,
    )


def _timed_out(spec: RolloutSpec, row: DeviceRow, now: float) -> bool:
    return row.notified_at is not None and now >= row.notified_at + spec.device_timeout_s


def _timeout_error(spec: RolloutSpec, what: str) -> ReportedError:
    return ReportedError("TIMED_OUT", f"no final report on the {what} within {spec.device_timeout_s:g} s")


def _row_due(spec: RolloutSpec, row: DeviceRow) -> float | None:
    """When this row's state would change without a report: its health window or timeout."""
    if row.state == S.INSTALLING and row.committed_at is not None and not row.rolled_back:
        return row.committed_at + spec.health_window_s
    if row.state in IN_FLIGHT and row.notified_at is not None:
        return row.notified_at + spec.device_timeout_s
    return None


def plan_device(
    deployment_id: int,
    model_ref: str,
    device: DeviceFacts,
    row: DeviceRow | None,
    model: DesiredModel | None,
    now: float,
    serving: ServingPolicy | None = None,
    offload: OffloadPolicy | None = None,
    spec: RolloutSpec | None = None,
) -> DeviceDecision:
    """Tell one device of deployment ``deployment_id`` (model ``model_ref``) to run ``model``
    (``None``: not yet: compiles not all ready, unknown profile, its wave not open) and decide
    its row (``None``: new to the deployment). ``serving`` and ``offload`` are the policies it is
    told with it (``None``: the defaults). ``now`` stamps a new desired state."""
    spec = spec or RolloutSpec()
    old = row if row is not None else DeviceRow()
    cur = old
    desired = None
    if model is not None:
        if needs_write(device.desired, str(deployment_id), model, serving, offload):
            if cur.previous is None:
                cur = replace(cur, previous=_previous_models(device))
            desired = next_desired(
                device.device_id, device.desired_generation, str(deployment_id), model, now, serving, offload
            )
            cur = replace(cur, generation=desired.generation, notified_at=now, committed_at=None)
        elif cur.generation is None:
            cur = replace(cur, generation=device.desired_generation, notified_at=now)
            if cur.previous is None:
                cur = replace(cur, previous=_previous_models(device))
    new = observe(spec, cur, device, model_ref, now)
    moved = row is None or (old.state, old.active, old.error) != (new.state, new.active, new.error)
    return DeviceDecision(device.device_id, new, desired, moved)


def _previous_models(device: DeviceFacts) -> tuple[DesiredModel, ...]:
    """What a device ran before a deployment told it anything: its stored desired models."""
    return tuple(device.desired.models) if device.desired is not None else ()


def _rollback_device(
    deployment_id: int,
    device: DeviceFacts,
    row: DeviceRow,
    now: float,
    spec: RolloutSpec,
    model_ref: str,
    serving: ServingPolicy,
    offload: OffloadPolicy,
) -> DeviceDecision:
    """Tell a touched device its previous models again (once), and decide its row."""
    desired = None
    cur = row
    if not row.rolled_back:
        prev = tuple(row.previous or ())
        desired = DesiredState(
            device_id=device.device_id,
            generation=device.desired_generation + 1,
            models=prev,
            deployment_id=str(deployment_id),
            serving=serving,
            offload=offload,
            issued_at=now,
        )
        state = row.state if row.state in (S.FAILED, S.TIMED_OUT) else S.NOTIFIED
        cur = replace(row, generation=desired.generation, notified_at=now, rolled_back=True, state=state)
    new = observe(spec, cur, device, model_ref, now)
    moved = (row.state, row.active, row.error) != (new.state, new.active, new.error)
    return DeviceDecision(device.device_id, new, desired, moved)


# -- a whole deployment ---------------------------------------------------------------------------


def wave_counts(rows: Sequence[DeviceRow]) -> dict[int, dict[str, int]]:
    """Devices per wave per state (rows without a wave are left out)."""
    out: dict[int, Counter[str]] = {}
    for r in rows:
        if r.wave is not None:
            out.setdefault(r.wave, Counter())[r.state.value] += 1
    return {w: dict(c) for w, c in sorted(out.items())}


def outcomes_of(counts: WaveCounts, upto: int) -> tuple[Outcomes, int, int]:
    """The install outcomes of waves ``0..upto``, how many of their devices there are, and how
    many of those have ended."""
    healthy = failed = timed_out = total = ended = 0
    for wave, by_state in counts.items():
        if wave > upto:
            continue
        for state, n in by_state.items():
            total += n
            if state == S.HEALTHY:
                healthy += n
            elif state == S.FAILED:
                failed += n
            elif state == S.TIMED_OUT:
                timed_out += n
            if S(state) in ENDED:
                ended += n
    return Outcomes(healthy, failed, timed_out), total, ended


@dataclass(frozen=True)
class Progress:
    """What the opened waves say: the state, wave and bake start next, whether to roll back,
    and the verdict. ``replan``: the whole deployment must be decided (a wave opens, a roll-back
    starts)."""

    state: D
    wave: int
    wave_ended_at: float | None
    rollback: bool
    verdict: Verdict
    error: str | None
    replan: bool
    due: float | None = None


def progress(
    spec: RolloutSpec,
    state: D,
    wave: int,
    waves: int,
    wave_ended_at: float | None,
    rollback: bool,
    counts: WaveCounts,
    now: float,
    new: Quality | None = None,
    old: Quality | None = None,
    error: str | None = None,
) -> Progress:
    """Decide a started rollout (waves assigned, wave ``wave`` of ``waves`` open) from its
    per-wave counts alone: O(waves)."""
    outcomes, total, ended = outcomes_of(counts, wave)
    verdict = judge(spec, outcomes, new, old)
    if state in (D.HALTED, D.ROLLED_BACK):
        touched_total, done = _rollback_counts(counts, wave)
        final = D.ROLLED_BACK if rollback and done == touched_total else state
        return Progress(final, wave, wave_ended_at, rollback, verdict, error, False)
    if verdict.failed:
        reason = f"gate failed in wave {wave + 1} of {waves}: " + "; ".join(verdict.reasons)
        return Progress(
            D.HALTED, wave, wave_ended_at, spec.auto_rollback, verdict, reason, spec.auto_rollback
        )
    all_ended = ended == total
    if not all_ended:
        return Progress(state if state == D.PAUSED else D.RUNNING, wave, None, False, verdict, None, False)
    ended_at = wave_ended_at if wave_ended_at is not None else now
    if wave + 1 >= waves:
        last = D.SUCCEEDED if state != D.PAUSED else D.PAUSED
        return Progress(last, wave, ended_at, False, verdict, None, False)
    if state == D.PAUSED:
        return Progress(D.PAUSED, wave, ended_at, False, verdict, None, False)
    if now < ended_at + spec.bake_time_s:
        return Progress(
            D.RUNNING, wave, ended_at, False, verdict, None, False, due=ended_at + spec.bake_time_s
        )
    return Progress(D.RUNNING, wave + 1, None, False, verdict, None, True)


def _rollback_counts(counts: WaveCounts, upto: int) -> tuple[int, int]:
    """Touched devices of waves ``0..upto`` (all but PENDING) and those whose roll-back ended."""
    touched = done = 0
    for wave, by_state in counts.items():
        if wave > upto:
            continue
        for state, n in by_state.items():
            if state == S.PENDING:
                continue
            touched += n
            if S(state) in ROLLBACK_ENDED:
                done += n
    return touched, done


def plan_deployment(
    deployment: DeploymentFacts,
    members: Sequence[DeviceFacts],
    builds: Mapping[BuildKey, Build],
    now: float,
    new: Quality | None = None,
    old: Quality | None = None,
) -> DeploymentPlan:
    """Decide a live deployment over its member devices (those it claims, in the order their
    desired states should go out) and the builds they need (every member's ``build`` is a key of
    ``builds``). ``new``/``old``: telemetry of the opened waves' devices on the new version and
    on the previous one, for the quality gates. ``now`` stamps new desired states."""
    spec = deployment.spec
    member_ids = {m.device_id for m in members}
    removed = tuple(d for d in deployment.rows if d not in member_ids)
    statuses = [b.status for b in builds.values()]
    serving = deployment.policy.serving
    offload = device_offload(deployment.policy.offload, deployment.cloud_url)
    state = deployment.state
    rows = dict(deployment.rows)
    started = any(r.wave is not None for r in rows.values())
    compiles_failed = [
        b.error or f"{b.target}: failed" for b in builds.values() if b.status == BundleStatus.FAILED
    ]

    if state in (D.HALTED, D.ROLLED_BACK):
        return _plan_halted(deployment, members, rows, removed, now, serving, offload)
    if compiles_failed and not started:
        failed = [
            plan_device(deployment.id, deployment.model_ref, m, rows.get(m.device_id), None, now, spec=spec)
            for m in members
        ]
        return _finish(deployment, tuple(failed), removed, D.FAILED, compile_failure_message(compiles_failed))
    all_ready = bool(statuses) and all(s == BundleStatus.READY for s in statuses)
    if not members or not all_ready:
        waiting_rows = [
            plan_device(deployment.id, deployment.model_ref, m, rows.get(m.device_id), None, now, spec=spec)
            for m in members
        ]
        waiting = D.PENDING if not members else D.COMPILING
        if state == D.PAUSED:
            waiting = D.PAUSED
        return _finish(deployment, tuple(waiting_rows), removed, waiting, None)

    # Started (or starting now): every member has a wave.
    ranked = assign_waves(spec, [m.device_id for m in members], {d: r.wave for d, r in rows.items()})
    waves = max(ranked.values()) + 1 if ranked else 1
    wave = max(deployment.wave, 0)
    wave_ended_at = deployment.wave_ended_at
    budget = _rate_budget(spec, rows.values(), now)

    def decide_all(open_upto: int, budget: int | None) -> list[DeviceDecision]:
        out = []
        for m in members:
            row = rows.get(m.device_id)
            base = replace(row or DeviceRow(), wave=ranked[m.device_id])
            told = base.generation is not None
            wants = ranked[m.device_id] <= open_upto and m.build is not None
            model = builds[m.build].model if wants and m.build is not None else None
            if model is not None and not told and budget is not None:
                if budget <= 0:
                    model = None
                else:
                    budget -= 1
            d = plan_device(deployment.id, deployment.model_ref, m, base, model, now, serving, offload, spec)
            out.append(replace(d, moved=d.moved or row is None))
        return out

    decisions = decide_all(wave, budget)
    counts = wave_counts([d.row for d in decisions])
    prog = progress(spec, state, wave, waves, wave_ended_at, False, counts, now, new, old)
    while prog.replan and not prog.rollback and prog.wave != wave:
        wave = prog.wave
        decisions = decide_all(wave, _rate_budget(spec, [d.row for d in decisions], now))
        counts = wave_counts([d.row for d in decisions])
        prog = progress(spec, prog.state, wave, waves, None, False, counts, now, new, old)
    if prog.state == D.HALTED:
        rows = {d.device_id: d.row for d in decisions}
        halted = replace(deployment, state=D.HALTED, wave=wave, error=prog.error)
        plan = _plan_halted(halted, members, rows, removed, now, serving, offload, rollback=prog.rollback)
        return replace(
            plan,
            verdict=prog.verdict,
            changed=(deployment.state, deployment.error) != (plan.state, plan.error),
        )
    due = _earliest([prog.due, *(_row_due(spec, d.row) for d in decisions)])
    if budget is not None and any(
        d.row.generation is None and d.row.wave is not None and d.row.wave <= wave for d in decisions
    ):
        due = _earliest([due, now + 60.0 / spec.max_per_minute if spec.max_per_minute else None])
    plan = _finish(deployment, tuple(decisions), removed, prog.state, prog.error)
    return replace(
        plan,
        wave=wave,
        waves=waves,
        wave_ended_at=prog.wave_ended_at,
        verdict=prog.verdict,
        counts=counts,
        due=due,
    )


def _plan_halted(
    deployment: DeploymentFacts,
    members: Sequence[DeviceFacts],
    rows: Mapping[str, DeviceRow],
    removed: tuple[str, ...],
    now: float,
    serving: ServingPolicy,
    offload: OffloadPolicy,
    rollback: bool | None = None,
) -> DeploymentPlan:
    """A halted deployment: no device is told the new model any more; when rolling back, every
    touched device is told its previous models once, and the deployment is ROLLED_BACK when
    every one of them has ended its roll-back."""
    spec = deployment.spec
    rolling = deployment.rollback if rollback is None else rollback
    decisions = []
    for m in members:
        row = rows.get(m.device_id)
        if row is None or row.generation is None:  # never touched: stays as it is
            d = plan_device(deployment.id, deployment.model_ref, m, row, None, now, spec=spec)
        elif rolling:
            d = _rollback_device(deployment.id, m, row, now, spec, deployment.model_ref, serving, offload)
        else:
            d = plan_device(deployment.id, deployment.model_ref, m, row, None, now, spec=spec)
        decisions.append(d)
    counts = wave_counts([d.row for d in decisions])
    touched = [d.row for d in decisions if d.row.generation is not None]
    done = all(r.state in ROLLBACK_ENDED for r in touched)
    state = D.ROLLED_BACK if rolling and done else D.HALTED
    if deployment.state == D.ROLLED_BACK:
        state = D.ROLLED_BACK
    error = deployment.error
    due = _earliest([_row_due(spec, d.row) for d in decisions if d.row.state not in ROLLBACK_ENDED])
    plan = _finish(deployment, tuple(decisions), removed, state, error)
    return replace(
        plan,
        wave=deployment.wave,
        waves=max([r.wave for r in rows.values() if r.wave is not None], default=-1) + 1,
        wave_ended_at=deployment.wave_ended_at,
        rollback=rolling,
        counts=counts,
        due=due,
    )


def _finish(
    deployment: DeploymentFacts,
    decisions: tuple[DeviceDecision, ...],
    removed: tuple[str, ...],
    state: D,
    error: str | None,
) -> DeploymentPlan:
    if deployment.state != state and deployment.state in ADVANCING | {D.HALTED, D.FAILED}:
        check_deployment_move(deployment.state, state)
    changed = (deployment.state, deployment.error) != (state, error)
    return DeploymentPlan(
        decisions,
        removed,
        state,
        error,
        changed,
        wave=deployment.wave,
        wave_ended_at=deployment.wave_ended_at,
        rollback=deployment.rollback,
    )


def _rate_budget(spec: RolloutSpec, rows: Iterable[DeviceRow], now: float) -> int | None:
    """How many more devices may be told the new model now under ``max_per_minute``."""
    if spec.max_per_minute is None:
        return None
    recent = sum(
        1 for r in rows if r.notified_at is not None and r.notified_at > now - 60.0 and not r.rolled_back
    )
    return max(0, spec.max_per_minute - recent)


def _earliest(times: Sequence[float | None]) -> float | None:
    real = [t for t in times if t is not None]
    return min(real) if real else None


# -- one report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportPlan:
    """What one device's report does: its row afterwards (``moved``: its state changed), the
    deployment's counts afterwards, its progress, and whether the whole deployment must now be
    decided (:func:`plan_deployment`) because a wave opens or a roll-back starts."""

    row: DeviceRow
    moved: bool
    counts: dict[int, dict[str, int]]
    progress: Progress | None
    replan: bool
    due: float | None


def plan_report(
    deployment: DeploymentFacts,
    waves: int,
    counts: WaveCounts,
    device: DeviceFacts,
    row: DeviceRow,
    now: float,
    new: Quality | None = None,
    old: Quality | None = None,
) -> ReportPlan:
    """Decide a report of ``device`` (whose row in the started ``deployment`` is ``row``) from
    the deployment's per-wave ``counts``: O(waves), whatever the group's size."""
    spec = deployment.spec
    new_row = observe(spec, row, device, deployment.model_ref, now)
    moved = (row.state, row.active, row.error) != (new_row.state, new_row.active, new_row.error)
    updated = {w: dict(c) for w, c in counts.items()}
    if moved and row.wave is not None:
        by_state = updated.setdefault(row.wave, {})
        by_state[row.state.value] = by_state.get(row.state.value, 0) - 1
        if by_state[row.state.value] <= 0:
            del by_state[row.state.value]
        by_state[new_row.state.value] = by_state.get(new_row.state.value, 0) + 1
    if deployment.wave < 0 or deployment.state not in ADVANCING | {D.HALTED}:
        return ReportPlan(new_row, moved, updated, None, False, _row_due(spec, new_row))
    prog = progress(
        spec,
        deployment.state,
        deployment.wave,
        waves,
        deployment.wave_ended_at,
        deployment.rollback,
        updated,
        now,
        new,
        old,
        deployment.error,
    )
    replan = prog.replan or (prog.state == D.HALTED and deployment.state != D.HALTED)
    return ReportPlan(new_row, moved, updated, prog, replan, _earliest([prog.due, _row_due(spec, new_row)]))
