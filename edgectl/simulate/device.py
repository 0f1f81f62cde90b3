"""One simulated device: a paho client on the shared loop and the little state an agent keeps.

It behaves as :mod:`agent.mqtt_client` and :mod:`agent.update.reconciler` do on the wire:

- client id = device id, persistent session, the last will ``Status(online=False)`` retained;
  on every connect ``Status(online=True)`` retained, a QoS 1 subscription to its desired topic
  and the latest report again. Connection numbers and report ``seq`` only grow, across runs too
  (they start from the wall clock, where the agent keeps counters on disk).
- A desired state is decided as :func:`agent.update.plan.decide` does (older, applied or failed
  generations are answered with the current report; the serving model is committed at once; no
  model unloads), then the update's reports follow :func:`~edgectl.simulate.update.update_steps`
  with small random delays. A newer desired state cancels a download, else waits for the update
  in flight to end, as the agent's worker does.
- Telemetry every ``telemetry_interval`` seconds (QoS 1, as the agent's publisher), from the
  first connect on; one message without a model while none serves.

Everything here runs on the network loop's thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.contracts.errors import ContractError
from agent.contracts.state import DesiredModel, DesiredState, ErrorCode, ReportedError, ReportedState, Status
from agent.contracts.state import UpdateState as S
from agent.contracts.topics import device_topic
from agent.update.machine import Event, next_state
from edgectl.simulate.registrar import Credentials
from edgectl.simulate.telemetry import measure
from edgectl.simulate.update import Step, already_active_step, update_steps

if TYPE_CHECKING:
    from edgectl.simulate.simulator import Simulator

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 30.0


@dataclass(slots=True)
class Times:
    """When one desired generation reached the device and when it sent its final report
    (monotonic seconds), and how it ended (``COMMITTED``, or the error code)."""

    desired_at: float
    final_at: float | None = None
    outcome: str | None = None


class SimDevice:
    __slots__ = (
        "active",
        "active_sha",
        "applied",
        "attempt",
        "client",
        "connected_at",
        "connection",
        "creds",
        "device_id",
        "error",
        "failed",
        "first",
        "generation",
        "labels",
        "latest",
        "mode",
        "pending",
        "previous",
        "profile",
        "ran",
        "registered_at",
        "seq",
        "sim",
        "state",
        "stopping",
        "telemetry_timer",
        "times",
        "token",
        "topics",
    )

    def __init__(
        self, sim: Simulator, device_id: str, profile: str, labels: dict[str, str], mode: str
    ) -> None:
        self.device_id, self.profile, self.labels, self.sim = device_id, profile, labels, sim
        self.mode = mode  # "normal" | "offline" | "unresponsive"
        self.creds: Credentials | None = None
        self.client: mqtt.Client | None = None
        self.topics = {k: device_topic(device_id, k) for k in ("desired", "reported", "status", "telemetry")}
        self.connection = int(time.time())
        self.seq = int(time.time() * 1000)
        self.generation = 0  # the desired generation last taken up
        self.applied = 0
        self.failed: set[int] = set()
        self.state = S.IDLE
        self.active: str | None = None
        self.active_sha: str | None = None
        self.previous: str | None = None
        self.error: ReportedError | None = None
        self.ran: set[str] = set()
        self.first: str | None = None  # the first version it ran: regressions show on the others
        self.latest: ReportedState | None = None
        self.token = 0  # bumped to cancel the update in flight
        self.pending: DesiredState | None = None
        self.times: dict[int, Times] = {}
        self.attempt = 0
        self.stopping = False
        self.connected_at: float | None = None
        self.registered_at: float | None = None
        self.telemetry_timer: Any = None

    # -- connection ------------------------------------------------------------------------------

    def open(self, creds: Credentials) -> None:
        """Make the client for ``creds`` and connect (loop thread)."""
        self.creds = creds
        v5 = creds.mqtt.protocol == "5"
        if v5:
            c = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=MQTTProtocolVersion.MQTTv5
            )
        else:
            c = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.device_id,
                protocol=MQTTProtocolVersion.MQTTv311,
                clean_session=False,
            )
        c.max_inflight_messages_set(20)
        c.max_queued_messages_set(1000)
        if creds.tls is not None:
            c.tls_set_context(creds.tls)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.sim.loop.attach(c)
        self.client = c
        self.connect()

    def connect(self) -> None:
        c, creds = self.client, self.creds
        if c is None or creds is None or self.stopping:
            return
        self.connection += 1
        c.will_set(self.topics["status"], self._status(False), qos=1, retain=True)
        s = creds.mqtt
        try:
            if s.protocol == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                c.connect(s.host, s.port, s.keepalive, clean_start=False, properties=props)
            else:
                c.connect(s.host, s.port, s.keepalive)
        except OSError as exc:
            log.debug("%s: connect to %s:%d failed: %s", self.device_id, s.host, s.port, exc)
            self._retry_connect()

    def _retry_connect(self) -> None:
        if self.stopping:
            return
        delay = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2**self.attempt) * (0.5 + self.sim.rng.random())
        self.attempt += 1
        self.sim.loop.call_later(delay, self.connect)

    def _status(self, online: bool) -> bytes:
        return Status(self.device_id, online=online, connection=self.connection).to_json()

    def _on_connect(self, client: mqtt.Client, _ud: Any, flags: Any, reason: Any, _props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("%s: the broker refused the connection: %s", self.device_id, reason)
            return
        self.attempt = 0
        if self.connected_at is None:
            self.connected_at = self.sim.loop.clock()
        client.publish(self.topics["status"], self._status(True), qos=1, retain=True)
        client.subscribe(self.topics["desired"], qos=1)
        if self.latest is not None and self.mode == "normal":
            self._publish_report(self.latest)
        if self.telemetry_timer is None and self.mode == "normal" and self.sim.config.telemetry_interval > 0:
            phase = self.sim.rng.random() * self.sim.config.telemetry_interval
            self.telemetry_timer = self.sim.loop.call_later(phase, self._telemetry)

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not self.stopping:
            log.debug("%s: connection lost (%s); reconnecting", self.device_id, reason)
            self._retry_connect()

    def close(self) -> None:
        """Say offline (retained) and disconnect (loop thread)."""
        self.stopping = True
        if self.telemetry_timer is not None:
            self.telemetry_timer.cancel()
        c = self.client
        if c is not None and c.is_connected():
            c.publish(self.topics["status"], self._status(False), qos=1, retain=True)
            c.disconnect()

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected()

    # -- desired state ---------------------------------------------------------------------------

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.topics["desired"] or not msg.payload:
            return
        try:
            desired = DesiredState.from_json(bytes(msg.payload))
        except ContractError as exc:
            self.sim.counts["refused"] += 1
            log.warning("%s: refused a desired state: %s", self.device_id, exc)
            return
        self.on_desired(desired)

    def on_desired(self, desired: DesiredState) -> None:
        gen = desired.generation
        if gen not in self.times and desired.device_id == self.device_id:
            self.times[gen] = Times(self.sim.loop.clock())
        if self.mode != "normal":
            return
        if self.state not in (S.IDLE, S.COMMITTED):  # an update is in flight
            if gen <= self.generation:
                return
            if self.state is S.DOWNLOADING:
                self.token += 1
                self._set(next_state(self.state, Event.CANCELLED), error=None)
                self._publish_report(self._report())
            else:
                self.pending = desired
                return
        self._decide(desired)

    def _decide(self, desired: DesiredState) -> None:
        gen = desired.generation
        if (
            desired.device_id != self.device_id
            or gen < self.generation
            or (gen == self.applied and gen > 0)
            or gen in self.failed
        ):
            if self.latest is not None:
                self._publish_report(self.latest)  # say where we stand, as the agent does
            return
        self.generation = gen
        if not desired.models:
            self.previous, self.active, self.active_sha = self.active, None, None
            self._finish(already_active_step(self.state), None)
            return
        model = desired.models[0]
        if model.sha256 == self.active_sha:
            self._finish(already_active_step(self.state), model)
            return
        failure = self.sim.faults.failure(self.device_id, model.ref, self.ran)
        steps = update_steps(failure, start=self.state)
        self.token += 1
        self._walk(self.token, model, steps, 0)

    def _walk(self, token: int, model: DesiredModel, steps: tuple[Step, ...], i: int) -> None:
        if token != self.token or self.stopping:
            return  # cancelled
        step = steps[i]
        if step.final:
            self._finish(step, model)
            return
        self._set(step.state, error=step.error)
        self._publish_report(self._report())
        if step.state is S.DOWNLOADING and self.sim.config.fetch and i + 1 < len(steps):
            self.sim.fetch(self, model, lambda code, detail: self._fetched(token, model, steps, code, detail))
            return
        lo, hi = self.sim.config.step_delay
        self.sim.loop.call_later(
            lo + (hi - lo) * self.sim.rng.random(), lambda: self._walk(token, model, steps, i + 1)
        )

    def _fetched(
        self, token: int, model: DesiredModel, steps: tuple[Step, ...], code: ErrorCode | None, detail: str
    ) -> None:
        if token != self.token:
            return
        if code is not None:  # the real bytes were wrong or missing: fail as the agent would
            self._walk(token, model, update_steps(code, detail)[1:], 0)  # DOWNLOADING is reported
            return
        self._walk(token, model, steps, 1)

    def _finish(self, step: Step, model: DesiredModel | None) -> None:
        gen = self.generation
        if step.commits and model is not None:
            if model.sha256 != self.active_sha:
                self.previous = self.active
                self.active, self.active_sha = model.ref, model.sha256
            self.ran.add(model.ref)
            if self.first is None:
                self.first = model.ref
        if step.commits:
            self.applied = gen
        else:
            self.failed.add(gen)
        self._set(step.state, error=step.error)
        self._publish_report(self._report())
        t = self.times.get(gen)
        if t is not None:
            t.final_at = self.sim.loop.clock()
            t.outcome = "COMMITTED" if step.commits else (step.error.code if step.error else str(step.state))
        self.sim.on_final(self, gen)
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._decide(pending)

    def _set(self, state: S, error: ReportedError | None) -> None:
        self.state, self.error = state, error

    def _report(self) -> ReportedState:
        self.seq += 1
        return ReportedState(
            device_id=self.device_id,
            generation=self.generation,
            state=self.state,
            active=self.active,
            previous=self.previous,
            error=self.error,
            seq=self.seq,
        )

    def _publish_report(self, report: ReportedState) -> None:
        self.latest = report
        c = self.client
        if c is not None and c.is_connected():
            c.publish(self.topics["reported"], report.to_json(), qos=1)
            self.sim.counts["reports"] += 1

    # -- telemetry -------------------------------------------------------------------------------

    def _telemetry(self) -> None:
        interval = self.sim.config.telemetry_interval
        self.telemetry_timer = self.sim.loop.call_later(interval, self._telemetry)
        c = self.client
        if c is None or not c.is_connected():
            return
        t = measure(
            self.device_id,
            self.active,
            new_version=self.active is not None and self.active != self.first,
            faults=self.sim.faults,
            window_s=interval,
            ts=time.time(),
            rng=self.sim.rng,
        )
        c.publish(self.topics["telemetry"], t.to_json(), qos=1)
        self.sim.counts["telemetry"] += 1

    def timeline(self) -> list[dict[str, Any]]:
        return [
            {"generation": g, "desired_at": t.desired_at, "final_at": t.final_at, "outcome": t.outcome}
            for g, t in sorted(self.times.items())
        ]
