"""Helpers for the simulator tests: a registrar that needs no fleet server, and a wire recorder
that reads every device message off the broker and parses it with its contract."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.contracts import DesiredModel, DesiredState, DeviceTopic, ReportedState, Status, Telemetry
from agent.contracts.registration import MqttSettings
from edgectl.simulate import Credentials

CONTRACTS: dict[str, Any] = {"reported": ReportedState, "status": Status, "telemetry": Telemetry}


class BrokerOnly:
    """A :class:`~edgectl.simulate.Registrar` that hands every device the same broker."""

    def __init__(self, host: str, port: int, keepalive: int = 5) -> None:
        self.settings = MqttSettings(host=host, port=port, protocol="5", keepalive=keepalive)
        self.registered: list[str] = []
        self._lock = threading.Lock()

    def register(
        self, device_id: str, profile: str, labels: dict[str, str], facts: dict[str, Any]
    ) -> Credentials:
        with self._lock:
            self.registered.append(device_id)
        return Credentials(self.settings)

    def close(self) -> None:
        pass


class Wire:
    """Every message under ``edgefleet/v1/devices/#``, parsed by its contract (a payload that
    does not parse fails the test when it is read)."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: list[tuple[str, str, bytes]] = []  # (device id, kind, payload)
        self._cond = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"wire-{time.monotonic_ns()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_a: subscribed.set()
        self._client.on_connect = lambda c, *_: c.subscribe("edgefleet/v1/devices/#", qos=1)
        self._client.connect(host, port)
        self._client.loop_start()
        assert subscribed.wait(10), "the wire recorder could not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        t = DeviceTopic.parse(msg.topic)
        with self._cond:
            self.messages.append((t.device_id, t.kind, bytes(msg.payload)))
            self._cond.notify_all()

    def of(self, kind: str, device_id: str | None = None) -> list[Any]:
        with self._cond:
            rows = [(d, p) for d, k, p in self.messages if k == kind and p]
        return [CONTRACTS[kind].from_json(p) for d, p in rows if device_id is None or d == device_id]

    def states(self, device_id: str, generation: int) -> list[str]:
        return [str(r.state) for r in self.of("reported", device_id) if r.generation == generation]

    def wait(self, check: Callable[[Wire], Any], timeout: float = 30.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = check(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out waiting for {what or check}; {len(self.messages)} messages seen"
                    )
                self._cond.wait(min(left, 0.2))

    def publish_desired(self, desired: DesiredState) -> None:
        topic = str(DeviceTopic(desired.device_id, "desired"))
        self._client.publish(topic, desired.to_json(), qos=1, retain=True).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def desired(device_id: str, generation: int, version: str = "1", sha: str = "a" * 64) -> DesiredState:
    model = DesiredModel(
        name="digits",
        version=version,
        target="onnx-x86",
        precision="int8",
        target_path=f"digits/{version}/onnx-x86.tar",
        url=f"/artifacts/digits/{version}/onnx-x86.tar",
        size=1234,
        sha256=sha,
    )
    return DesiredState(device_id=device_id, generation=generation, models=(model,))
