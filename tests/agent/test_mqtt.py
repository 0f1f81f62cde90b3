"""The agent's MQTT link against a real Mosquitto: desired in, reported states out in order,
online/offline status, persistent sessions, and a broker restart that loses everything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.contracts.state import DesiredState, Status
from agent.contracts.topics import device_topic
from agent.mqtt_client import AgentMqtt
from agent.registration import MqttSettings
from agent.update.worker import UpdateWorker
from tests.agent.agent_testkit import ArtifactServer, BuiltBundle, Observer, Recorder, desired_state
from tests.agent.update.test_update_flow import DEVICE, FULL_UPDATE, make_reconciler, serve

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")


class Stack:
    """Reconciler + worker + MQTT link, wired as the daemon wires them."""

    def __init__(self, data: Path, server: ArtifactServer, broker: Any, protocol: str = "5") -> None:
        self.recorder = Recorder()
        self.mqtt: AgentMqtt | None = None
        self.reconciler = make_reconciler(data, server, self._report)
        self.reconciler.restore()
        self.worker = UpdateWorker(self.reconciler)
        self.mqtt = AgentMqtt(
            DEVICE,
            MqttSettings(broker.host, broker.port, protocol, keepalive=5),
            self.worker.submit,
            reconnect_max=1,
        )
        self.mqtt.publish_reported(self.reconciler.reported())
        self.worker.start()
        self.mqtt.start()
        assert self.mqtt.connected.wait(10)

    def _report(self, state: Any) -> None:
        self.recorder(state)
        if self.mqtt is not None:
            self.mqtt.publish_reported(state)

    def stop(self) -> None:
        self.worker.stop()
        assert self.mqtt is not None
        self.mqtt.stop()
        self.reconciler.registry.close()


@pytest.fixture
def observer(mosquitto_broker: Any) -> Iterator[Observer]:
    obs = Observer(mosquitto_broker.host, mosquitto_broker.port)
    yield obs
    obs.stop()


@pytest.fixture
def served(artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]) -> ArtifactServer:
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    return artifact_server


def committed(gen: int, ref: str) -> Any:
    return lambda o: any(
        r["state"] == "COMMITTED" and r["generation"] == gen and r["active"] == ref
        for r in o.payloads("reported")
    )


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_desired_state_is_applied_and_reported_in_order(
    tmp_path: Path,
    mosquitto_broker: Any,
    observer: Observer,
    served: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    protocol: str,
) -> None:
    stack = Stack(tmp_path / "data", served, mosquitto_broker, protocol)
    try:
        observer.wait_for(lambda o: any(s["online"] for s in o.payloads("status")))
        observer.publish(
            device_topic(DEVICE, "desired"), desired_state(DEVICE, 1, bundles["1"].model).to_json()
        )
        observer.wait_for(committed(1, "linear:1"))
        assert observer.reported_states(1) == FULL_UPDATE
        observer.publish(
            device_topic(DEVICE, "desired"), desired_state(DEVICE, 2, bundles["2"].model).to_json()
        )
        observer.wait_for(committed(2, "linear:2"))
        assert observer.reported_states(2) == FULL_UPDATE
        assert serve(stack.reconciler)[0] == "linear:2"
    finally:
        stack.stop()
    status = observer.wait_for(lambda o: [s for s in o.payloads("status") if not s["online"]])
    assert status[-1]["device_id"] == DEVICE


def test_online_status_is_retained_and_stop_says_offline(
    tmp_path: Path, mosquitto_broker: Any, served: ArtifactServer
) -> None:
    stack = Stack(tmp_path / "data", served, mosquitto_broker)
    late = Observer(mosquitto_broker.host, mosquitto_broker.port)  # joins after: gets the retained one
    try:
        late.wait_for(
            lambda o: [
                p for t, p, r in o.messages if t.endswith("/status") and r and Status.from_json(p).online
            ]
        )
        stack.stop()
        late.wait_for(lambda o: [s for s in o.payloads("status") if not s["online"]])
    finally:
        late.stop()
    again = Observer(mosquitto_broker.host, mosquitto_broker.port)
    try:
        retained = again.wait_for(lambda o: [p for t, p, r in o.messages if t.endswith("/status") and r])
        assert Status.from_json(retained[-1]).online is False
    finally:
        again.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_desired_state_sent_while_offline_arrives_through_the_session(
    tmp_path: Path,
    mosquitto_broker: Any,
    observer: Observer,
    served: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    protocol: str,
) -> None:
    first = Stack(tmp_path / "data", served, mosquitto_broker, protocol)
    first.stop()
    # Not retained: only the persistent session can deliver it.
    observer.publish(
        device_topic(DEVICE, "desired"), desired_state(DEVICE, 1, bundles["1"].model).to_json(), retain=False
    )
    second = Stack(tmp_path / "data", served, mosquitto_broker, protocol)
    try:
        observer.wait_for(committed(1, "linear:1"))
    finally:
        second.stop()


def test_a_broker_that_lost_everything_gets_the_latest_report_again(
    tmp_path: Path, mosquitto_broker: Any, served: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> None:
    stack = Stack(tmp_path / "data", served, mosquitto_broker)
    obs = Observer(mosquitto_broker.host, mosquitto_broker.port)
    try:
        obs.publish(device_topic(DEVICE, "desired"), desired_state(DEVICE, 1, bundles["1"].model).to_json())
        obs.wait_for(committed(1, "linear:1"))
        obs.stop()
        mosquitto_broker.restart(wipe=True)
        obs = Observer(mosquitto_broker.host, mosquitto_broker.port)
        # paho reconnects by itself; on connect the agent re-publishes its status and latest report.
        obs.wait_for(committed(1, "linear:1"), timeout=30)
        late = Observer(mosquitto_broker.host, mosquitto_broker.port)  # the online status is retained again
        try:
            late.wait_for(
                lambda o: [
                    p for t, p, r in o.messages if t.endswith("/status") and r and Status.from_json(p).online
                ]
            )
        finally:
            late.stop()
    finally:
        obs.stop()
        stack.stop()


def test_a_malformed_or_foreign_desired_state_is_ignored(
    tmp_path: Path,
    mosquitto_broker: Any,
    observer: Observer,
    served: ArtifactServer,
    bundles: dict[str, BuiltBundle],
) -> None:
    stack = Stack(tmp_path / "data", served, mosquitto_broker)
    try:
        topic = device_topic(DEVICE, "desired")
        observer.publish(topic, b"{not json")
        observer.publish(topic, DesiredState("someone-else", 5, (bundles["1"].model,)).to_json())
        observer.publish(topic, desired_state(DEVICE, 6, bundles["1"].model).to_json())
        observer.wait_for(committed(6, "linear:1"))
        assert {r["generation"] for r in observer.payloads("reported")} <= {0, 6}
    finally:
        stack.stop()


def test_connects_once_the_broker_comes_up(tmp_path: Path) -> None:
    from tests.fixtures.mosquitto import MOSQUITTO, MosquittoBroker

    if not Path(MOSQUITTO).exists():
        pytest.skip(f"mosquitto is not installed ({MOSQUITTO})")
    (tmp_path / "broker").mkdir()
    broker = MosquittoBroker(MOSQUITTO, tmp_path / "broker")  # port chosen, not started yet
    got: list[DesiredState] = []
    link = AgentMqtt(
        DEVICE, MqttSettings(broker.host, broker.port, "5", keepalive=5), got.append, reconnect_max=1
    )
    link.start()
    try:
        assert not link.connected.wait(1.5)
        broker.start()
        assert link.connected.wait(15)
    finally:
        link.stop()
        broker.stop()
