"""The agent's MQTT link (paho-mqtt 2.x): desired state in, reported state and online status out.

- Client id = device id; with ``tls`` (the device's certificate, :mod:`agent.identity`) the
  broker knows the device by its certificate and its ACL admits only the device's own topics.
- Persistent session (MQTT 5 ``clean_start=False`` with a session expiry,
  or MQTT 3.1.1 ``clean_session=False``), so QoS 1 desired states queued while the device was
  away are delivered when it returns.
- Last will: ``Status(online=False)``, retained, QoS 1, on ``.../status``; on every connect the
  agent publishes ``Status(online=True)`` retained, (re)subscribes to ``.../desired`` at QoS 1 and
  re-publishes its latest reported state, so a broker restart loses nothing.
- paho's network thread only parses and hands desired states to a callback that must not block
  (the update worker's ``submit``); paho reconnects with backoff by itself.
- Nothing may escape a message callback: paho re-raises it, which ends its network thread, the
  broker drops the silent client, and a retained or unacknowledged message kills it again at the
  next connect. So every message is bounded before it is parsed (:mod:`agent.inbound`), and any
  refusal or exception is logged (topic, reason, error class, size and digest; never the
  payload), counted (``on_refused``) and quarantined by its sha256, so the same bytes are never
  handed over again, across restarts too when the quarantine has a file. The log says it once
  per reason per ``log_interval`` (with the count held back since), and the counts by reason
  travel in every reported state (``refused``): a refusal re-publishes the latest report, at
  most as often as it is logged, so the server learns of it without a flood.
- A watchdog thread restarts the network loop should it die anyway (a bug in paho or in a
  callback outside the guard); ``on_loop_restart`` counts it. It lives
  here rather than in the daemon because this class alone owns the paho client.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.connection_count import ConnectionCounter
from agent.contracts.errors import ContractError
from agent.contracts.registration import MqttSettings
from agent.contracts.state import DesiredState, ReportedState, Status
from agent.contracts.topics import device_topic
from agent.inbound import InboundLimits, LogThrottle, MessageRefused, Quarantine, digest

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # how long the broker keeps the session (and queued QoS 1) for us


class AgentMqtt:
    def __init__(
        self,
        device_id: str,
        settings: MqttSettings,
        on_desired: Callable[[DesiredState], None],
        *,
        reconnect_min: float = 1.0,
        reconnect_max: float = 60.0,
        max_inflight: int = 20,
        connections: ConnectionCounter | None = None,
        limits: InboundLimits | None = None,
        quarantine: Quarantine | None = None,
        on_refused: Callable[[str, str], None] | None = None,
        on_loop_restart: Callable[[], None] | None = None,
        watchdog_interval: float = 5.0,
        tls: ssl.SSLContext | None = None,
        log_interval: float = 60.0,
    ) -> None:
        self.device_id = device_id
        self.settings = settings
        self._on_desired = on_desired
        self.topics = {k: device_topic(device_id, k) for k in ("desired", "reported", "status", "telemetry")}
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._latest: ReportedState | None = None
        self.limits = limits or InboundLimits()
        self.quarantine = quarantine or Quarantine()
        self._on_refused = on_refused
        self._on_loop_restart = on_loop_restart
        self.refused: Counter[str] = Counter()  # by reason, since start; reported
        self._log_throttle = LogThrottle(log_interval)
        self._watchdog_interval = watchdog_interval
        self._stopping = threading.Event()
        self._loop_lock = threading.Lock()  # the watchdog's restart vs stop()
        self._watchdog = threading.Thread(target=self._watch, name="edge-agent-mqtt-watchdog", daemon=True)
        self._v5 = settings.protocol == "5"
        if self._v5:
            self._client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=device_id, protocol=MQTTProtocolVersion.MQTTv5
            )
        else:
            self._client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=device_id,
                protocol=MQTTProtocolVersion.MQTTv311,
                clean_session=False,
            )
        c = self._client
        c.enable_logger(logging.getLogger("agent.mqtt.paho"))
        c.max_inflight_messages_set(max_inflight)  # paho 2.x: only before connect
        c.max_queued_messages_set(1000)
        c.reconnect_delay_set(min_delay=max(1, int(reconnect_min)), max_delay=max(1, int(reconnect_max)))
        self._connections = connections or ConnectionCounter()
        self._connection = 0
        self._arm_will()
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        if tls is not None:  # mTLS: the broker takes the certificate's CN (the device id) as username
            c.tls_set_context(tls)

    def _arm_will(self) -> None:
        """Number the next connection and set its last will (paho sends the will with every
        CONNECT, so setting it between connections is enough)."""
        self._connection = self._connections.next()
        self._client.will_set(self.topics["status"], self._status(online=False), qos=1, retain=True)

    def _status(self, online: bool) -> bytes:
        return Status(self.device_id, online=online, connection=self._connection).to_json()

    def start(self) -> None:
        """Connect in the background; paho retries until the broker answers."""
        s = self.settings
        log.info("MQTT %s connecting to %s:%d as %s", s.protocol, s.host, s.port, self.device_id)
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            self._client.connect_async(s.host, s.port, s.keepalive, clean_start=False, properties=props)
        else:
            self._client.connect_async(s.host, s.port, s.keepalive)
        self._client.loop_start()
        self._watchdog.start()

    def is_up(self) -> bool:
        """Whether the link is connected now (for the ``edgefleet_agent_mqtt_connected`` gauge)."""
        return self.connected.is_set() and self._client.is_connected()

    def _watch(self) -> None:
        """Restart paho's network loop whenever it has died (``loop_start`` refuses while the
        loop runs, so calling it is also the check)."""
        while not self._stopping.wait(self._watchdog_interval):
            with self._loop_lock:
                if (
                    self._stopping.is_set()
                    or self._client.loop_start() != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
                ):
                    continue
                # The new loop goes on where the dead one stopped (paho handles the packet it
                # died on again); if the broker dropped the silent client meanwhile, the loop
                # reconnects with backoff as after any lost connection.
                log.error("the MQTT network loop had died; restarted it")
            if self._on_loop_restart is not None:
                self._on_loop_restart()

    def publish_reported(self, state: ReportedState) -> None:
        """Publish ``state`` now if connected; it is re-published on every (re)connect."""
        with self._lock:
            self._latest = state
            if self._client.is_connected():
                self._client.publish(self.topics["reported"], self._reported_json(state), qos=1)

    def _reported_json(self, state: ReportedState) -> bytes:
        """``state`` with the refusal counts as they stand (call with ``_lock`` held)."""
        return replace(state, refused=dict(self.refused) or None).to_json()

    def publish_telemetry(self, payload: bytes, timeout: float = 5.0) -> bool:
        """Publish one telemetry message (QoS 1) and wait for the broker's acknowledgement.
        Returns false when not connected or unacknowledged within ``timeout`` (the caller keeps
        the message; a late acknowledgement then means a harmless duplicate)."""
        if not self.is_up():
            return False
        info = self._client.publish(self.topics["telemetry"], payload, qos=1)
        if info.rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def stop(self, timeout: float = 5.0) -> None:
        """Say offline (retained), disconnect cleanly and stop the network thread."""
        with self._loop_lock:
            self._stopping.set()
        if self._client.is_connected():
            info = self._client.publish(self.topics["status"], self._status(online=False), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish the offline status: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()
        if self._watchdog.is_alive():
            self._watchdog.join(timeout)

    # paho callbacks: they run on paho's network thread and must return quickly.

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: object,
        _props: object,
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            log.error("MQTT broker refused the connection: %s", reason_code)
            return
        log.info("MQTT connected (session present: %s)", flags.session_present)
        client.publish(self.topics["status"], self._status(online=True), qos=1, retain=True)
        client.subscribe(self.topics["desired"], qos=1)
        with self._lock:
            if self._latest is not None:
                client.publish(self.topics["reported"], self._reported_json(self._latest), qos=1)
        self.connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: object, _flags: object, reason_code: object, _props: object
    ) -> None:
        self.connected.clear()
        self._arm_will()  # the next connection gets a new number
        if getattr(reason_code, "is_failure", True):
            log.warning("MQTT connection lost (%s); paho reconnects with backoff", reason_code)
        else:
            log.info("MQTT disconnected")

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.topics["desired"] or not msg.payload:
            return  # an empty retained payload just clears the topic
        payload = bytes(msg.payload)
        sha = ""
        try:
            self.limits.check_size("desired", payload)  # before hashing: a huge one costs nothing more
            sha = digest(payload)
            if sha in self.quarantine:
                raise MessageRefused("quarantined", "refused before; dropped unread")
            self.limits.check_depth(payload)
            try:
                desired = DesiredState.from_json(payload)
            except ContractError as exc:
                raise MessageRefused("malformed", str(exc)[:200]) from exc
            self._on_desired(desired)
        except MessageRefused as exc:
            self._refuse(msg.topic, payload, sha, exc.reason, exc)
        except Exception as exc:  # whatever the handler raised (RecursionError, a bug): never let it out
            self._refuse(msg.topic, payload, sha, "handler_error", exc)

    def _refuse(self, topic: str, payload: bytes, sha: str, reason: str, exc: BaseException) -> None:
        """Log, count and quarantine a refused message. Must not raise (paho's thread)."""
        detail = str(exc) if isinstance(exc, MessageRefused) else type(exc).__name__
        with self._lock:
            self.refused[reason] += 1
        held = self._log_throttle.admit(reason)
        if held is not None:
            log.log(
                logging.INFO if reason == "quarantined" else logging.ERROR,
                "refused a message on %s: %s (%s; %d bytes, sha256 %s)%s",
                topic,
                reason,
                detail,
                len(payload),
                sha[:16] or "-",
                f"; {held} more refused for this reason since the last line" if held else "",
            )
            log.debug("refused message's error", exc_info=exc)
            self._republish()
        if sha and reason != "quarantined":
            try:
                self.quarantine.add(sha)
            except OSError as err:
                log.warning("could not persist the quarantine: %s", err)
        if self._on_refused is not None:
            try:
                self._on_refused(self.topic_kind(topic), reason)
            except Exception:
                log.exception("counting a refused message failed")

    def _republish(self) -> None:
        """Send the latest report again, with the refusal counts (best effort: paho's thread)."""
        try:
            with self._lock:
                if self._latest is not None and self._client.is_connected():
                    self._client.publish(self.topics["reported"], self._reported_json(self._latest), qos=1)
        except Exception:
            log.exception("re-publishing the reported state failed")

    def topic_kind(self, topic: str) -> str:
        return topic.rsplit("/", 1)[-1]
