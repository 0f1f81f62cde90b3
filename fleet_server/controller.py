"""The rollout controller: the I/O shell around :mod:`fleet_server.rollout`.

One pass (:meth:`RolloutController.reconcile`) reads devices, groups and live deployments, works
out which deployment each device follows (and the policy of the group each deployment targets),
makes sure every bundle those devices need exists (and
is queued for compiling), hands each deployment's facts to
:func:`fleet_server.rollout.plan_deployment`, writes what the plan says (desired states, device
rows, the deployment's state), commits, and only then publishes the desired states it wrote. A pass
runs when something happened (a deployment, a registration, a report, a compile that ended:
:meth:`wake`) and every ``interval`` seconds anyway, so a missed wake-up only delays things.

Passes are serialised by a lock, and generation numbers are only ever bumped here, so they grow
by exactly one per desired-state change. A pass publishes before it lets go of the lock: passes
normally run on the controller's thread, but :meth:`reconcile` may be called from any thread, and
a pass that published after a later one would leave an older generation as the retained desired
state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from agent.contracts import DesiredModel, DesiredState
from device_profiles import DeviceProfile
from fleet_server import queries, rollout
from fleet_server.build_settings import build_key
from fleet_server.db import Bundle, Deployment, DeploymentDevice, Device
from fleet_server.groups import policy as group_policy
from fleet_server.states import BundleStatus, DeploymentState, DeviceRolloutState

log = logging.getLogger(__name__)


class DesiredPublisher(Protocol):
    def publish_desired(self, desired: DesiredState) -> None:
        """Publish ``desired`` to its device, retained, QoS 1. Must not raise when disconnected."""


class CompileQueue(Protocol):
    def submit(self, bundle_id: int) -> bool: ...


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
    ) -> None:
        self._sessions = sessions
        self._profiles = profiles
        self._compiler = compiler
        self.publisher = publisher
        self._public_url = public_url.rstrip("/") if public_url else None
        self._interval = interval
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pass_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.passes = 0

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
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.reconcile()
            except Exception:
                log.exception("rollout pass failed; retrying in %.1fs", self._interval)

    def artifact_url(self, target_path: str) -> str:
        # -- device identity: always relative; an enrolled device resolves it against the mTLS
        # device listener it was given (the operator listener's /artifacts wants the operator token)
        return f"/artifacts/{target_path}"

    def reconcile(self) -> None:
        """One pass. Commits before publishing, so a published desired state is always stored, and
        publishes while holding the pass lock, so desired states go out in generation order
        (publishing only queues the message; it does not wait for the broker)."""
        with self._pass_lock:
            to_publish: list[DesiredState] = []
            with self._sessions.begin() as s:
                now = self._clock()
                for dep, members, policy in self._claimed(s):
                    to_publish.extend(self._reconcile_deployment(s, dep, members, policy, now))
                to_compile = queries.pending_bundle_ids(s)
            self.passes += 1
            publisher = self.publisher
            if publisher is not None:
                for desired in to_publish:
                    publisher.publish_desired(desired)
        for bundle_id in to_compile:
            if self._compiler is not None:
                self._compiler.submit(bundle_id)

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
    ) -> tuple[DesiredState, ...]:
        """Read one deployment's facts, plan it, write the plan; returns the desired states to
        publish once committed."""
        mv = dep.model_version
        bundles = {
            key: queries.ensure_bundle(s, mv.id, key, profile)
            for key, profile in queries.needs_of(members, self._profiles).items()
        }
        builds = {key: self._build(mv.name, mv.version, b) for key, b in bundles.items()}
        facts = rollout.DeploymentFacts(
            id=dep.id,
            model_ref=mv.ref,
            state=DeploymentState(dep.state),
            error=dep.error,
            rows={
                dd.device_id: rollout.DeviceRow(
                    dd.generation, DeviceRolloutState(dd.state), dd.active, dd.error
                )
                for dd in dep.devices
            },
            policy=policy,
            cloud_url=self._public_url,
        )
        plan = rollout.plan_deployment(facts, [self._device_facts(d) for d in members], builds, now)
        self._write(dep, members, plan, datetime.fromtimestamp(now, UTC))
        return plan.desired

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
            dd.generation = decision.row.generation
            dd.state = decision.row.state.value
            dd.active = decision.row.active
            dd.error = decision.row.error
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
        if plan.changed:
            log.info(
                "deployment %s: %s → %s%s",
                dep.id,
                dep.state,
                plan.state.value,
                f" ({plan.error})" if plan.error else "",
            )
            dep.state, dep.error = plan.state.value, plan.error
            dep.updated_at = stamp
