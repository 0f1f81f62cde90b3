"""The rollout controller: the I/O shell around :mod:`fleet_server.rollout`.

One pass (:meth:`RolloutController.reconcile`) reads devices, groups and live deployments, works
out which deployment each device follows, makes sure every bundle those devices need exists (and
is queued for compiling), writes the desired state of each device whose bundles are all ready,
recomputes every per-device and deployment state from the devices' reported states, commits, and
only then publishes the desired states it wrote. A pass runs when something happened (a
deployment, a registration, a report, a compile that ended: :meth:`wake`) and every
``interval`` seconds anyway, so a missed wake-up only delays things.

Passes are serialised by a lock, and generation numbers are only ever bumped here, so they grow
by exactly one per desired-state change. A pass publishes before it lets go of the lock: passes
run both on the controller's thread and in request threads (``POST /deployments``), and a pass
that published after a later one would leave an older generation as the retained desired state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from agent.contracts import ContractError, DesiredModel, ReportedState
from device_profiles import DeviceProfile
from fleet_server import rollout
from fleet_server.build_settings import BuildKey, build_key
from fleet_server.db import Bundle, Deployment, DeploymentDevice, Device, Group, ModelVersion, utcnow
from fleet_server.errors import NotFoundError
from fleet_server.membership import GroupSpec
from fleet_server.states import BundleStatus, DeploymentState, DeviceRolloutState

log = logging.getLogger(__name__)


class DesiredPublisher(Protocol):
    def publish_desired(self, device_id: str, payload: bytes) -> None:
        """Publish a device's desired state, retained, QoS 1. Must not raise when disconnected."""


class CompileQueue(Protocol):
    def submit(self, bundle_id: int) -> bool: ...


def group_specs(groups: Iterable[Group]) -> dict[str, GroupSpec]:
    return {g.name: GroupSpec(g.name, frozenset(g.device_ids), dict(g.selector or {})) for g in groups}


def needs_of(devices: Iterable[Device], profiles: Mapping[str, DeviceProfile]) -> dict[BuildKey, str]:
    """The builds ``devices`` need, each with the (alphabetically first) profile asking for it."""
    out: dict[BuildKey, str] = {}
    for dev in sorted(devices, key=lambda d: d.profile):
        prof = profiles.get(dev.profile)
        if prof is None:
            log.warning("device %s has unknown profile %r; it gets no bundle", dev.device_id, dev.profile)
            continue
        out.setdefault(build_key(prof), prof.name)
    return out


def find_bundle(session: Session, mv_id: int, key: BuildKey) -> Bundle | None:
    return session.scalars(
        select(Bundle).where(
            Bundle.model_version_id == mv_id,
            Bundle.target == key.target,
            Bundle.precision == key.precision,
            Bundle.settings_key == key.settings_key,
        )
    ).first()


def ensure_bundle(session: Session, mv_id: int, key: BuildKey, profile: str) -> Bundle:
    """The bundle row for (model version, build key), created ``pending`` when missing."""
    bundle = find_bundle(session, mv_id, key)
    if bundle is None:
        bundle = Bundle(
            model_version_id=mv_id,
            target=key.target,
            precision=key.precision,
            settings_key=key.settings_key,
            settings=dict(key.settings),
            profile=profile,
            status=BundleStatus.PENDING.value,
        )
        session.add(bundle)
        session.flush()
    return bundle


def parse_reported(data: Mapping[str, object] | None) -> ReportedState | None:
    if not data:
        return None
    try:
        return ReportedState.from_json(json.dumps(data))
    except ContractError:
        return None


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
        path = f"/artifacts/{target_path}"
        return f"{self._public_url}{path}" if self._public_url else path

    def reconcile(self) -> None:
        """One pass. Commits before publishing, so a published desired state is always stored, and
        publishes while holding the pass lock, so desired states go out in generation order
        (publishing only queues the message; it does not wait for the broker)."""
        to_compile: list[int] = []
        with self._pass_lock:
            to_publish: list[tuple[str, bytes]] = []
            with self._sessions.begin() as s:
                self._pass(s, to_publish, to_compile)
            self.passes += 1
            publisher = self.publisher
            if publisher is not None:
                for device_id, payload in to_publish:
                    publisher.publish_desired(device_id, payload)
        for bundle_id in to_compile:
            if self._compiler is not None:
                self._compiler.submit(bundle_id)

    def _pass(self, s: Session, to_publish: list[tuple[str, bytes]], to_compile: list[int]) -> None:
        devices = {d.device_id: d for d in s.scalars(select(Device))}
        groups = group_specs(s.scalars(select(Group).options(selectinload(Group.members))))
        live = list(
            s.scalars(
                select(Deployment)
                .where(Deployment.state != DeploymentState.SUPERSEDED.value)
                .options(selectinload(Deployment.devices), selectinload(Deployment.model_version))
                .order_by(Deployment.id)
                # PostgreSQL: a concurrent POST /deployments superseding one of these waits for this
                # pass instead of being overwritten by it (SQLite: BEGIN IMMEDIATE serialises).
                .with_for_update(of=Deployment)
            )
        )
        claim = rollout.claims(
            {d: dev.labels or {} for d, dev in devices.items()},
            groups,
            [rollout.LiveDeployment(dep.id, dep.group_name) for dep in live],
        )
        members: dict[int, list[Device]] = {}
        for device_id, dep_id in sorted(claim.items()):
            members.setdefault(dep_id, []).append(devices[device_id])
        for dep in live:
            self._reconcile_deployment(s, dep, members.get(dep.id, []), to_publish)
        to_compile.extend(
            s.scalars(
                select(Bundle.id).where(Bundle.status == BundleStatus.PENDING.value).order_by(Bundle.id)
            )
        )

    def _reconcile_deployment(
        self, s: Session, dep: Deployment, members: Sequence[Device], to_publish: list[tuple[str, bytes]]
    ) -> None:
        mv: ModelVersion = dep.model_version
        needs = needs_of(members, self._profiles)
        bundles = {key: ensure_bundle(s, mv.id, key, profile) for key, profile in needs.items()}
        statuses = [BundleStatus(b.status) for b in bundles.values()]
        rows = {dd.device_id: dd for dd in dep.devices}
        member_ids = {d.device_id for d in members}
        for device_id, dd in list(rows.items()):
            if device_id not in member_ids:  # left the group, or follows a newer deployment now
                dep.devices.remove(dd)
                del rows[device_id]
        all_ready = all(st == BundleStatus.READY for st in statuses)
        for dev in members:
            if dev.device_id in rows:
                dd = rows[dev.device_id]
            else:
                dd = DeploymentDevice(device_id=dev.device_id, state=DeviceRolloutState.PENDING.value)
                dep.devices.append(dd)
                rows[dev.device_id] = dd
            prof = self._profiles.get(dev.profile)
            if not all_ready or prof is None:
                continue
            bundle = bundles[build_key(prof)]
            assert bundle.target_path and bundle.size is not None and bundle.sha256
            model = DesiredModel(
                name=mv.name,
                version=mv.version,
                target=bundle.target,
                precision=bundle.precision,
                target_path=bundle.target_path,
                url=self.artifact_url(bundle.target_path),
                size=bundle.size,
                sha256=bundle.sha256,
            )
            if rollout.needs_write(dev.desired, str(dep.id), model):
                desired = rollout.next_desired(
                    dev.device_id, dev.desired_generation, str(dep.id), model, self._clock()
                )
                dev.desired = desired.to_dict()
                dev.desired_generation = desired.generation
                dd.generation = desired.generation
                to_publish.append((dev.device_id, desired.to_json()))
                log.info(
                    "deployment %s: device %s → generation %d", dep.id, dev.device_id, desired.generation
                )
            elif dd.generation is None:
                dd.generation = dev.desired_generation
        device_states = []
        devices = {d.device_id: d for d in members}
        for device_id, dd in rows.items():
            dev = devices[device_id]
            state, err = rollout.device_state(parse_reported(dev.reported), dd.generation, mv.ref)
            new_err = None if err is None else {"code": err.code, "message": err.message}
            if (dd.state, dd.error, dd.active) != (state.value, new_err, dev.active):
                dd.state, dd.error, dd.active = state.value, new_err, dev.active
                dd.updated_at = utcnow()
            device_states.append(state)
        new_state = rollout.deployment_state(statuses, device_states)
        failed_compiles = [b.error or f"{b.target}: failed" for b in bundles.values() if b.status == "failed"]
        if failed_compiles:
            error: str | None = rollout.compile_failure_message(failed_compiles)
        elif new_state == DeploymentState.FAILED:
            n = sum(st == DeviceRolloutState.FAILED for st in device_states)
            error = f"{n} of {len(device_states)} devices failed"
        else:
            error = None
        if (dep.state, dep.error) != (new_state.value, error):
            log.info(
                "deployment %s: %s → %s%s", dep.id, dep.state, new_state.value, f" ({error})" if error else ""
            )
            dep.state, dep.error = new_state.value, error
            dep.updated_at = utcnow()


def request_builds(
    session: Session, mv_id: int, names: Iterable[str], profiles: Mapping[str, DeviceProfile]
) -> list[Bundle]:
    """The bundles ``names`` (device profiles) need for model version ``mv_id``, created
    ``pending`` where missing (compile ahead of a rollout). A ``failed`` one is put back to
    ``pending`` so it is compiled again: a compile can fail for a passing reason (store error,
    converter timeout), and this is how an operator retries it. Unknown profiles:
    ``NotFoundError`` naming the known ones."""
    out: dict[int, Bundle] = {}
    for name in names:
        prof = profiles.get(name)
        if prof is None:
            raise NotFoundError(f"unknown profile {name!r} (known: {', '.join(sorted(profiles))})")
        bundle = ensure_bundle(session, mv_id, build_key(prof), prof.name)
        if bundle.status == BundleStatus.FAILED.value:
            log.info("bundle %s failed before (%s); compiling it again", bundle.id, bundle.error)
            bundle.status = BundleStatus.PENDING.value
            bundle.error = None
            bundle.started_at = bundle.finished_at = None
        out[bundle.id] = bundle
    return list(out.values())
