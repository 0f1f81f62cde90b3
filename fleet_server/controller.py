"""The rollout controller: the I/O shell around :mod:`fleet_server.rollout`.

Two kinds of decision, both writing what the pure core says, committing, and only then publishing
the desired states they wrote:

- A **pass** (:meth:`RolloutController.reconcile`) reads devices, groups and live deployments,
  works out which deployment each device follows (and the policy of the group each targets),
  makes sure every bundle those devices need exists (and is queued for compiling), and hands each
  deployment's facts to :func:`fleet_server.rollout.plan_deployment`. It runs on a start, a
  membership or policy change, a compile that ended, an operator's pause/resume/abort/roll-back,
  a wave that ended, a timer (health windows, timeouts, bake times; :attr:`due`), and every
  ``interval`` seconds anyway, so a missed wake-up only delays things.
- A **report** (:meth:`on_report`, from the MQTT bridge) is decided alone by
  :func:`fleet_server.rollout.plan_report` from the device's own row and its deployment's
  per-wave counts: O(1) work and a short transaction however large the group; it asks for a
  pass only when a wave opens or a roll-back starts.

Both are serialised by a lock on the controller's thread, and generation numbers are only ever
bumped here, so they grow by exactly one per desired-state change. Publishing happens before the
lock is let go: a pass that published after a later one would leave an older generation as the
retained desired state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.contracts import DesiredModel, DesiredState
from device_profiles import DeviceProfile
from fleet_server import queries, rollout
from fleet_server.build_settings import build_key
from fleet_server.db import Bundle, Deployment, DeploymentDevice, Device
from fleet_server.groups import policy as group_policy
from fleet_server.rollout.gates import Quality
from fleet_server.rollout.spec import RolloutSpec
from fleet_server.states import ADVANCING, BundleStatus, DeploymentState, DeviceRolloutState, IllegalMove

log = logging.getLogger(__name__)

# Deployments whose device rows a report may still move (a halted one rolls back).
REPORTABLE = tuple(s.value for s in (*ADVANCING, DeploymentState.HALTED))
REPORT_CHUNK = 500  # device ids per read when deciding a batch of reports
# While reports keep arriving, the periodic pass (a safety net that reads every device) waits up to
# this many intervals: reports are decided on their own, and a full pass every interval would take
# the time they need at a few thousand devices. Wakes and timers still run a pass at once.
PASS_DEFER_MAX = 5


class DesiredPublisher(Protocol):
    def publish_desired(self, desired: DesiredState) -> None:
        """Publish ``desired`` to its device, retained, QoS 1. Must not raise when disconnected."""


class CompileQueue(Protocol):
    def submit(self, bundle_id: int) -> bool: ...


# The quality gates' telemetry: (session, device ids, model ref, since epoch s) → figures or None.
QualitySource = Callable[[Session, Sequence[str], str, float], Quality | None]


class RolloutController:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        profiles: Mapping[str, DeviceProfile],
        compiler: CompileQueue | None = None,
        publisher: DesiredPublisher | None = None,
        public_url: str | None = None,
        interval: float = 2.0,
        clock: Callable[[], float] = time.time,
        quality: QualitySource | None = None,
    ) -> None:
        self._sessions = sessions
        self._profiles = profiles
        self._compiler = compiler
        self.publisher = publisher
        self._public_url = public_url.rstrip("/") if public_url else None
        self._interval = interval
        self._clock = clock
        self.quality = quality
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pass_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pass_wanted = threading.Event()
        self._reports: set[str] = set()
        self._reports_lock = threading.Lock()
        self.due: float | None = None  # the next time a pass would change something on its own
        self.passes = 0
        self.reports = 0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="rollout-controller", daemon=True)
        self._thread.start()
        self.wake()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def wake(self) -> None:
        """Ask for a pass soon (coalesces: many wakes before a pass make one pass)."""
        self._pass_wanted.set()
        self._wake.set()

    def on_report(self, device_id: str) -> None:
        """A reported state of ``device_id`` was stored: decide it soon, alone (coalesces)."""
        with self._reports_lock:
            self._reports.add(device_id)
        self._wake.set()

    def _loop(self) -> None:
        last_pass = 0.0
        while not self._stop.is_set():
            timeout = self._interval
            if self.due is not None:
                timeout = max(0.0, min(timeout, self.due - self._clock()))
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                with self._reports_lock:
                    reports, self._reports = self._reports, set()
                if reports:
                    self.handle_reports(sorted(reports))
                now = self._clock()
                timer = self.due is not None and now >= self.due
                periodic = now - last_pass >= self._interval * (PASS_DEFER_MAX if reports else 1)
                if self._pass_wanted.is_set() or timer or periodic:
                    self._pass_wanted.clear()
                    self.reconcile()
                    last_pass = self._clock()
            except Exception:
                log.exception("rollout decision failed; retrying in %.1fs", self._interval)

    def artifact_url(self, target_path: str) -> str:
        # -- device identity: always relative; an enrolled device resolves it against the mTLS
        # device listener it was given (the operator listener's /artifacts wants the operator token)
        return f"/artifacts/{target_path}"

    # -- passes ------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """One pass. Commits before publishing, so a published desired state is always stored, and
        publishes while holding the pass lock, so desired states go out in generation order
        (publishing only queues the message; it does not wait for the broker)."""
        with self._pass_lock:
            to_publish: list[DesiredState] = []
            due: list[float] = []
            with self._sessions.begin() as s:
                now = self._clock()
                for dep, members, policy in self._claimed(s):
                    try:
                        published, when = self._reconcile_deployment(s, dep, members, policy, now)
                    except IllegalMove:
                        # A bug in the rollout core must not stop every other deployment: this
                        # one stays as it is (nothing was written) and is logged.
                        log.exception("deployment %s: no decision this pass", dep.id)
                        continue
                    to_publish.extend(published)
                    if when is not None:
                        due.append(when)
                to_compile = queries.pending_bundle_ids(s)
            self.due = min(due) if due else None
            self.passes += 1
            self._publish(to_publish)
        for bundle_id in to_compile:
            if self._compiler is not None:
                self._compiler.submit(bundle_id)

    def _publish(self, desired: Sequence[DesiredState]) -> None:
        publisher = self.publisher
        if publisher is not None:
            for d in desired:
                publisher.publish_desired(d)

    def _claimed(self, s: Session) -> list[tuple[Deployment, list[Device], rollout.GroupPolicy]]:
        """Every live deployment with the devices it claims (sorted by id) and the policy of the
        group it targets."""
        devices = queries.all_devices(s)
        live = queries.live_deployments_for_update(s)
        groups = queries.all_groups(s)
        claim = rollout.claims(
            {d: dev.labels or {} for d, dev in devices.items()},
            queries.group_specs(groups.values()),
            [rollout.LiveDeployment(dep.id, dep.group_name) for dep in live],
        )
        members: dict[int, list[Device]] = {}
        for device_id, dep_id in sorted(claim.items()):
            members.setdefault(dep_id, []).append(devices[device_id])
        policies = {name: group_policy(g) for name, g in groups.items()}
        return [
            (dep, members.get(dep.id, []), policies.get(dep.group_name, rollout.GroupPolicy()))
            for dep in live
        ]

    def _reconcile_deployment(
        self,
        s: Session,
        dep: Deployment,
        members: Sequence[Device],
        policy: rollout.GroupPolicy,
        now: float,
    ) -> tuple[tuple[DesiredState, ...], float | None]:
        """Read one deployment's facts, plan it, write the plan; returns the desired states to
        publish once committed, and when it should be decided again."""
        if dep.state in (DeploymentState.ROLLED_BACK.value, DeploymentState.FAILED.value) and not members:
            return (), None
        mv = dep.model_version
        bundles = {
            key: queries.ensure_bundle(s, mv.id, key, profile)
            for key, profile in queries.needs_of(members, self._profiles).items()
        }
        builds = {key: self._build(mv.name, mv.version, b) for key, b in bundles.items()}
        facts = self._deployment_facts(dep, mv.ref, policy, {dd.device_id: row_of(dd) for dd in dep.devices})
        new, old = self._quality(s, facts, now)
        plan = rollout.plan_deployment(facts, [self._device_facts(d) for d in members], builds, now, new, old)
        self._write(dep, members, plan, datetime.fromtimestamp(now, UTC))
        due = plan.due
        if new is not None and plan.state == DeploymentState.RUNNING and facts.spec.gates.any:
            due = min(due or now + 1.0, now + 1.0)  # quality gates: look again in a second
        return plan.desired, due

    def _deployment_facts(
        self,
        dep: Deployment,
        model_ref: str,
        policy: rollout.GroupPolicy,
        rows: Mapping[str, rollout.DeviceRow],
    ) -> rollout.DeploymentFacts:
        return rollout.DeploymentFacts(
            id=dep.id,
            model_ref=model_ref,
            state=DeploymentState(dep.state),
            error=dep.error,
            rows=rows,
            policy=policy,
            cloud_url=self._public_url,
            spec=dep.spec or RolloutSpec(),
            wave=dep.wave if dep.wave is not None else -1,
            wave_ended_at=dep.wave_ended_at,
            rollback=bool(dep.rollback),
        )

    def _quality(
        self, s: Session, facts: rollout.DeploymentFacts, now: float
    ) -> tuple[Quality | None, Quality | None]:
        """Telemetry of the opened waves' devices on the new version since they were told, and on
        their previous version in the same length of time before, for the quality gates."""
        if self.quality is None or not facts.spec.gates.any or facts.wave < 0:
            return None, None
        opened = [
            d for d, r in facts.rows.items() if r.wave is not None and r.wave <= facts.wave and r.notified_at
        ]
        if not opened:
            return None, None
        since = min(r.notified_at for r in facts.rows.values() if r.notified_at) or now
        new = self.quality(s, opened, facts.model_ref, since)
        previous = {r.previous[0].ref for d, r in facts.rows.items() if d in opened and r.previous}
        old = None
        if len(previous) == 1:
            old = self.quality(s, opened, previous.pop(), since - max(60.0, now - since))
        return new, old

    def _device_facts(self, dev: Device) -> rollout.DeviceFacts:
        prof = self._profiles.get(dev.profile)
        return rollout.DeviceFacts(
            device_id=dev.device_id,
            build=None if prof is None else build_key(prof),
            desired=dev.desired,
            desired_generation=dev.desired_generation,
            reported=dev.reported,
            active=dev.active,
        )

    def _build(self, name: str, version: str, b: Bundle) -> rollout.Build:
        status = BundleStatus(b.status)
        model = None
        if status == BundleStatus.READY:
            assert b.target_path and b.size is not None and b.sha256
            model = DesiredModel(
                name=name,
                version=version,
                target=b.target,
                precision=b.precision,
                target_path=b.target_path,
                url=self.artifact_url(b.target_path),
                size=b.size,
                sha256=b.sha256,
            )
        return rollout.Build(b.target, status, b.error, model)

    def _write(
        self, dep: Deployment, members: Sequence[Device], plan: rollout.DeploymentPlan, stamp: datetime
    ) -> None:
        rows = {dd.device_id: dd for dd in dep.devices}
        for device_id in plan.removed:  # left the group, or follows a newer deployment now
            dep.devices.remove(rows.pop(device_id))
        devices = {d.device_id: d for d in members}
        for decision in plan.devices:
            dd = rows.get(decision.device_id)
            if dd is None:
                dd = DeploymentDevice(device_id=decision.device_id)
                dep.devices.append(dd)
            write_row(dd, decision.row)
            if decision.moved:
                dd.updated_at = stamp
            if decision.desired is not None:
                dev = devices[decision.device_id]
                dev.desired = decision.desired
                dev.desired_generation = decision.desired.generation
                log.info(
                    "deployment %s: device %s → generation %d",
                    dep.id,
                    dev.device_id,
                    decision.desired.generation,
                )
        dep.wave, dep.waves = plan.wave, plan.waves
        dep.wave_ended_at, dep.rollback = plan.wave_ended_at, plan.rollback
        if plan.counts is not None:
            dep.counts = counts_json(plan.counts)
        if plan.verdict is not None:
            dep.gate = verdict_json(plan.verdict)
        if plan.changed:
            self._log_state(dep, plan.state, plan.error)
            dep.state, dep.error = plan.state.value, plan.error
            dep.updated_at = stamp

    @staticmethod
    def _log_state(dep: Deployment, state: DeploymentState, error: str | None) -> None:
        log.info("deployment %s: %s → %s%s", dep.id, dep.state, state.value, f" ({error})" if error else "")

    # -- reports -----------------------------------------------------------------------------

    def handle_reports(self, device_ids: Sequence[str]) -> None:
        """Decide the stored reports of ``device_ids``, each from its own deployment row and its
        deployment's counts (no pass); asks for a pass where a wave opens or a gate fails."""
        with self._pass_lock:
            replan = False
            due: list[float] = []
            with self._sessions.begin() as s:
                now = self._clock()
                for start in range(0, len(device_ids), REPORT_CHUNK):
                    chunk = device_ids[start : start + REPORT_CHUNK]
                    # Two reads for the whole chunk, not two per report: each device's row in the
                    # newest deployment that still takes reports, and the devices themselves.
                    found: dict[str, tuple[DeploymentDevice, Deployment]] = {}
                    for dd, dep in s.execute(
                        select(DeploymentDevice, Deployment)
                        .join(Deployment, Deployment.id == DeploymentDevice.deployment_id)
                        .where(DeploymentDevice.device_id.in_(chunk), Deployment.state.in_(REPORTABLE))
                        .order_by(Deployment.id)
                    ):
                        found[dd.device_id] = (dd, dep)  # the newest deployment last: it wins
                    devices = {
                        d.device_id: d for d in s.scalars(select(Device).where(Device.device_id.in_(chunk)))
                    }
                    for device_id in chunk:
                        pair, dev = found.get(device_id), devices.get(device_id)
                        if pair is None or dev is None:
                            continue
                        r, when = self._handle_report(pair[0], pair[1], dev, now)
                        replan = replan or r
                        if when is not None:
                            due.append(when)
            self.reports += len(device_ids)
            if due:
                self.due = min([*due, *([self.due] if self.due is not None else [])])
        if replan:
            self.wake()

    def _handle_report(
        self, dd: DeploymentDevice, dep: Deployment, dev: Device, now: float
    ) -> tuple[bool, float | None]:
        if dep.wave is None or dep.wave < 0 or dd.wave is None:
            return True, None  # not started: a pass decides
        facts = self._deployment_facts(dep, dep.model_version.ref, rollout.GroupPolicy(), {})
        plan = rollout.plan_report(
            facts, dep.waves or 1, counts_of(dep.counts), self._device_facts(dev), row_of(dd), now
        )
        stamp = datetime.fromtimestamp(now, UTC)
        if plan.moved:
            write_row(dd, plan.row)
            dd.updated_at = stamp
            dep.counts = counts_json(plan.counts)
        prog = plan.progress
        if prog is not None and not plan.replan:
            dep.wave_ended_at = prog.wave_ended_at
            dep.gate = verdict_json(prog.verdict)
            if prog.state.value != dep.state or prog.error != dep.error:
                self._log_state(dep, prog.state, prog.error)
                dep.state, dep.error = prog.state.value, prog.error
                dep.updated_at = stamp
        return plan.replan, plan.due


def row_of(dd: DeploymentDevice) -> rollout.DeviceRow:
    """A stored deployment device as the rollout core's row."""
    previous = None
    if dd.previous is not None:
        previous = tuple(DesiredModel.from_dict(m, "previous") for m in dd.previous)
    return rollout.DeviceRow(
        dd.generation,
        DeviceRolloutState(dd.state),
        dd.active,
        dd.error,
        wave=dd.wave,
        notified_at=dd.notified_at,
        committed_at=dd.committed_at,
        previous=previous,
        rolled_back=bool(dd.rolled_back),
    )


def write_row(dd: DeploymentDevice, row: rollout.DeviceRow) -> None:
    dd.generation = row.generation
    dd.state = row.state.value
    dd.active = row.active
    dd.error = row.error
    dd.wave = row.wave
    dd.notified_at = row.notified_at
    dd.committed_at = row.committed_at
    dd.previous = None if row.previous is None else [m.to_dict() for m in row.previous]
    dd.rolled_back = row.rolled_back


def counts_of(stored: Mapping[str, Any] | None) -> dict[int, dict[str, int]]:
    return {int(w): {k: int(v) for k, v in c.items()} for w, c in (stored or {}).items()}


def counts_json(counts: Mapping[int, Mapping[str, int]]) -> dict[str, Any]:
    return {str(w): dict(c) for w, c in counts.items()}


def verdict_json(v: rollout.Verdict) -> dict[str, Any]:
    return {
        "failed": v.failed,
        "reasons": list(v.reasons),
        "checked": list(v.checked),
        "figures": dict(v.figures),
    }
