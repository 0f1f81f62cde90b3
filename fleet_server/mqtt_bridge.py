"""The MQTT bridge: publishes desired states and records what devices report.

paho-mqtt 2.x, QoS 1 both ways. With MQTT 5 the bridge keeps a persistent session
(``clean_start=False`` and a session expiry) and reads device topics through the shared
subscriptions of :func:`agent.contracts.topics.server_subscriptions`, so replicas split the load;
with MQTT 3.1.1 (the embedded amqtt broker) it uses ``clean_session=False`` and plain filters.
paho reconnects by itself with backoff. On every (re)connect the bridge subscribes again and
re-publishes the stored desired state of every device whose reported generation is behind:
publishing a retained desired state twice is harmless, and after a broker restart that lost
messages every device still gets what it should run.

Every message is bounded before it is parsed (:mod:`fleet_server.inbound`, with the numbers in
:mod:`fleet_server.limits`). One that breaks its bounds or its contract, or whose handling raises
anything at all, is dropped, counted by topic kind and reason and logged without its payload,
never raised: an exception escaping into paho's loop would end its thread, and one bad device must
not cut every device off.

Reported states arriving from the broker are checked on paho's network thread and stored by a
writer thread of their own, in batches: whatever has queued up while the last batch was being
written goes into one transaction (at most :data:`REPORT_BATCH`), so a thousand devices finishing
at once cost a few short transactions, not a thousand, and paho's thread never waits on the
database. A report queued but not yet stored when the process dies is not lost for good: on the
next connect the bridge re-publishes the desired state of every device whose stored report is
behind, and the device answers with its current report. :meth:`MqttBridge.handle` (tests, and
anything that is not paho) stores at once through the same code.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from agent.contracts import (
    ContractError,
    DesiredState,
    DeviceTopic,
    ReportedState,
    Status,
    Telemetry,
    UpdateState,
    device_topic,
    server_subscriptions,
)
from fleet_server.db import Device, utcnow
from fleet_server.inbound import OUT_OF_RANGE, RejectedMessage, bound_reported, check_status, read_json
from fleet_server.limits import FIELD_LIMITS, MESSAGE_LIMITS, MessageLimits, clip
from fleet_server.metrics import Metrics
from fleet_server.telemetry.ingest import TelemetryIngest

log = logging.getLogger(__name__)

MAX_INFLIGHT = 200
# Reported states that are not the end of an update: the device owes the server another report.
UPDATING = (
    UpdateState.DOWNLOADING,
    UpdateState.VERIFYING,
    UpdateState.INSTALLING,
    UpdateState.LOADING,
    UpdateState.SELF_TEST,
    UpdateState.ROLLING_BACK,
)
# MQTT 5: the largest packet the broker may send this client (CONNECT's Maximum Packet Size); the
# broker drops larger ones for it, so a 200 MB payload never reaches this process's memory. Well
# above every topic's payload bound (fleet_server.limits), so what lies between is still counted.
MAX_PACKET_BYTES = 1024 * 1024
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
REPORT_BATCH = 500  # reported states stored in one transaction at most

Report = tuple[str, ReportedState]


class MqttBridge:
    """Connects to ``host:port`` once :meth:`start` is called and keeps connecting until
    :meth:`stop`. ``on_report(device_id)`` is called after a reported state was stored."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        host: str,
        port: int,
        protocol: str = "5",
        client_id: str = "fleet-server",
        keepalive: int = 30,
        session_expiry_s: int = 3600,
        metrics: Metrics | None = None,
        on_report: Callable[[str], None] | None = None,
        limits: MessageLimits = MESSAGE_LIMITS,
        tls: ssl.SSLContext | None = None,
        telemetry: TelemetryIngest | None = None,
    ) -> None:
        self._sessions = sessions
        self._telemetry_ingest = telemetry
        self.host, self.port, self.protocol = host, port, protocol
        self._keepalive = keepalive
        self._session_expiry_s = session_expiry_s
        self._metrics = metrics or Metrics()
        self._on_report = on_report
        self._limits = limits
        self.connected = threading.Event()
        self._publish_lock = threading.Lock()
        self._published: dict[str, int] = {}
        self.connects = 0
        self._stopping = False
        self._reports: queue.SimpleQueue[Report | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self.report_batches = 0  # transactions the writer thread committed (for tests and benchmarks)
        v5 = protocol == "5"
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
        )
        self._client.max_inflight_messages_set(MAX_INFLIGHT)  # paho 2.x: before connect
        self._client.max_queued_messages_set(0)  # unbounded while the broker is away
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        if tls is not None:  # the server's own identity (CN fleet-server), which the broker's ACL knows
            self._client.tls_set_context(tls)

    @property
    def v5(self) -> bool:
        return self.protocol == "5"

    def start(self) -> None:
        """Connect in the background (returns at once; paho retries until the broker answers)."""
        props = None
        kwargs: dict[str, Any] = {}
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self._session_expiry_s
            props.MaximumPacketSize = MAX_PACKET_BYTES
            kwargs = {"clean_start": False, "properties": props}
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_reports, name="report-writer", daemon=True)
            self._writer.start()
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive, **kwargs)
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()
        if self._writer is not None:  # store what was queued, then end the writer
            self._reports.put(None)
            self._writer.join(30)
            self._writer = None

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    # -- outgoing ---------------------------------------------------------------------------

    def publish_desired(self, desired: DesiredState) -> None:
        """Publish ``desired`` on its device's desired topic, retained at QoS 1. While
        disconnected, paho queues the message, and the re-publish on reconnect covers it anyway.

        Never publishes a generation older than one already published for the device: the
        controller's passes and the re-publish on reconnect read the database at different times,
        and the retained message must end at the newest."""
        device_id, generation = desired.device_id, desired.generation
        with self._publish_lock:
            if generation < self._published.get(device_id, -1):
                log.debug(
                    "desired generation %d for %s is older than one sent; dropped", generation, device_id
                )
                return
            self._published[device_id] = generation
            info = self._client.publish(
                device_topic(device_id, "desired"), desired.to_json(), qos=1, retain=True
            )
        self._metrics.mqtt_messages.labels("out", "desired").inc()
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("publish desired for %s: %s", device_id, mqtt.error_string(info.rc))

    def republish_behind(self) -> int:
        """Publish the stored desired state of every device whose last report is not a final one
        for its desired generation: never reported it, or still in the middle of the update.

        The device answers even a desired state it has applied with its current report, so this
        also recovers reports a broker dropped while this server was not subscribed (a restarted
        broker need not keep a shared subscription, and then answers "no matching subscribers")."""
        with self._sessions() as s:
            rows = s.scalars(
                select(Device.desired).where(
                    Device.desired_generation > 0,
                    or_(
                        Device.reported_generation.is_(None),
                        Device.reported_generation < Device.desired_generation,
                        Device.state.in_([str(st) for st in UPDATING]),
                    ),
                )
            ).all()
        for desired in rows:
            if desired is not None:
                self.publish_desired(desired)
        if rows:
            log.info("re-published desired state of %d device(s) behind", len(rows))
        return len(rows)

    # -- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _ud: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        self.connects += 1
        self._metrics.mqtt_connected.inc()
        log.info(
            "connected to MQTT %s at %s:%d (session present: %s)",
            self.protocol,
            self.host,
            self.port,
            getattr(flags, "session_present", "?"),
        )
        client.subscribe([(t, 1) for t in server_subscriptions(shared=self.v5)])
        try:
            self.republish_behind()
        except Exception:
            log.exception("re-publishing desired states failed")
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        if self._stopping:
            log.info("disconnected from MQTT broker %s:%d", self.host, self.port)
            return
        log.warning("disconnected from MQTT broker %s:%d (%s); reconnecting", self.host, self.port, reason)

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        # handle() catches everything itself; this is the last net, since an exception escaping
        # into paho's loop would end its thread and the link with it.
        try:
            self._handle(msg.topic, bytes(msg.payload), queued=self._writer is not None)
        except Exception as exc:
            log.error("handling a message on %s failed: %s", clip(msg.topic), type(exc).__name__)

    # -- incoming ---------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> bool:
        """Record one device message. Returns False when it was ignored; never raises.

        A message that breaks its bounds or its contract, or whose handling raises anything, is
        dropped (quarantined: nothing of it is stored, and QoS 1 acknowledges it, so it is not
        redelivered), counted in ``edgefleet_server_mqtt_messages_rejected_total`` by topic kind
        and reason, and logged with the reason only, never the payload."""
        return self._handle(topic, payload, queued=False)

    def _handle(self, topic: str, payload: bytes, queued: bool) -> bool:
        """:meth:`handle`; with ``queued``, a reported state that passed its checks is handed to
        the writer thread (and True returned) instead of being stored here."""
        try:
            t = DeviceTopic.parse(topic)
        except ContractError as exc:
            self._reject("unknown", "topic", "?", str(exc))
            return False
        self._metrics.mqtt_messages.labels("in", t.kind).inc()
        try:
            if t.kind == "reported":
                rs = ReportedState.from_dict(self._read(t.kind, payload), "reported")
                if rs.device_id != t.device_id:
                    raise ContractError(f"reported.device_id {rs.device_id!r} does not match the topic")
                report = (t.device_id, bound_reported(rs, FIELD_LIMITS))
                if queued:
                    self._reports.put(report)
                    return True
                return self._store_reports([report])[0]
            if t.kind == "status":
                st = Status.from_dict(self._read(t.kind, payload), "status")
                return self._status(t.device_id, check_status(st))
            if t.kind == "telemetry":
                return self._telemetry(t.device_id, self._read(t.kind, payload))
        except RejectedMessage as exc:
            self._reject(t.kind, exc.reason, t.device_id, exc.detail)
        except ContractError as exc:
            self._reject(t.kind, "contract", t.device_id, str(exc))
        except Exception as exc:
            # A database error's text carries the statement's parameters (the payload): log the
            # type and its first line only.
            first = str(exc).split("\n", 1)[0]
            self._reject(t.kind, "error", t.device_id, f"{type(exc).__name__}: {first}")
        return False

    def _read(self, kind: str, payload: bytes) -> Any:
        return read_json(payload, kind, self._limits)

    def _reject(self, kind: str, reason: str, device_id: str, detail: str) -> None:
        self._metrics.mqtt_messages_rejected.labels(kind, reason).inc()
        if reason != "error":  # the older counter, by kind alone, counts the messages ignored
            self._metrics.mqtt_rejected.labels("topic" if reason == "topic" else kind).inc()
        log.warning("dropped %s from %s: %s (%s)", kind, clip(device_id, 128), reason, clip(detail, 300))

    def _write_reports(self) -> None:
        """The writer thread: takes what has queued, up to :data:`REPORT_BATCH`, and stores it in
        one transaction; ends on ``None`` once everything before it is stored."""
        while True:
            first = self._reports.get()
            if first is None:
                return
            batch, last = [first], False
            while len(batch) < REPORT_BATCH:
                try:
                    item = self._reports.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    last = True
                    break
                batch.append(item)
            try:
                self._store_reports(batch)
            except Exception as exc:  # the batch is lost; the devices re-report on the next connect
                first_line = str(exc).split("\n", 1)[0]
                for device_id, _rs in batch:
                    self._reject("reported", "error", device_id, f"{type(exc).__name__}: {first_line}")
            if last:
                return

    def _store_reports(self, reports: Sequence[Report]) -> list[bool]:
        """Store ``reports`` (in arrival order) in one transaction, then tell the controller of
        each one stored. Returns, per report, whether it was stored. A report refused on its own
        (ahead of what was sent) is counted and skipped; the others are stored."""
        stored = [False] * len(reports)
        with self._sessions.begin() as s:
            ids = sorted({device_id for device_id, _ in reports})
            devices = {d.device_id: d for d in s.scalars(select(Device).where(Device.device_id.in_(ids)))}
            now = utcnow()
            for i, (device_id, rs) in enumerate(reports):
                dev = devices.get(device_id)
                if dev is None:
                    log.warning("reported state from unregistered device %s ignored", clip(device_id, 128))
                    continue
                try:
                    stored[i] = self._apply_report(dev, rs, now)
                except RejectedMessage as exc:
                    self._reject("reported", exc.reason, device_id, exc.detail)
        self.report_batches += 1
        if self._on_report is not None:
            for (device_id, _rs), ok in zip(reports, stored, strict=True):
                if not ok:
                    continue
                try:
                    self._on_report(device_id)
                except Exception as exc:  # the report is stored; the controller's next pass sees it
                    self._reject("reported", "error", device_id, f"on_report: {type(exc).__name__}")
        return stored

    @staticmethod
    def _apply_report(dev: Device, rs: ReportedState, now: Any) -> bool:
        # Only the device's own identity can publish here (the broker's ACL); and no device
        # applies a generation the server never sent it, so a higher one is refused rather
        # than stored, where it would make every real report after it look stale.
        if rs.generation > dev.desired_generation:
            raise RejectedMessage(
                OUT_OF_RANGE,
                f"reported.generation {rs.generation} is ahead of the {dev.desired_generation} sent",
            )
        # QoS 1 may deliver a duplicate late, after a newer report: keep the newest.
        if dev.reported is not None and rs.is_older_than(dev.reported):
            log.debug("stale report from %s (generation %d) ignored", dev.device_id, rs.generation)
            return False
        dev.reported = rs
        dev.reported_generation = rs.generation
        dev.state = rs.state.value
        dev.active = rs.active
        dev.error = rs.error
        if rs.inference_url:
            dev.inference_url = rs.inference_url
        dev.online = True
        dev.last_seen = now
        return True

    def _status(self, device_id: str, st: Status) -> bool:
        if st.device_id != device_id:
            raise ContractError(f"status.device_id {st.device_id!r} does not match the topic")
        with self._sessions.begin() as s:
            dev = s.get(Device, device_id)
            if dev is None:
                return False
            if not st.supersedes(dev.status_connection):
                # e.g. the last will of a connection the device has since replaced
                log.debug(
                    "stale status from %s (connection %s < %s) ignored",
                    device_id,
                    st.connection,
                    dev.status_connection,
                )
                return False
            dev.online = st.online
            if st.connection is not None:
                dev.status_connection = st.connection
            dev.last_seen = utcnow()
        return True

    def _telemetry(self, device_id: str, data: Any) -> bool:
        """A message with the telemetry ``schema`` is read as :class:`Telemetry` (refused when it
        breaks the contract) and handed to the ingest, which stores it in the ``telemetry`` table
        in batches. One without a schema (older agents, free-form figures) is kept as sent on the
        device row only, bounded by its payload bound."""
        if not isinstance(data, dict):
            raise ContractError("telemetry: expected an object")
        if "schema" in data:
            t = Telemetry.from_dict(data, "telemetry")
            if t.device_id != device_id:
                raise ContractError(f"telemetry.device_id {t.device_id!r} does not match the topic")
            if self._telemetry_ingest is not None:
                self._telemetry_ingest.submit(device_id, t, data)
                return True
        with self._sessions.begin() as s:
            dev = s.get(Device, device_id)
            if dev is None:
                return False
            dev.telemetry = data
            dev.telemetry_at = dev.last_seen = utcnow()
        return True
