"""The daemon's MQTT link as ``/metrics`` shows it: the link gauge follows the broker, and a
retained poison desired state is counted while the agent stays connected and applies the good
desired state that follows."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from agent.contracts.topics import device_topic
from agent.daemon import Agent
from device_profiles import load_profile
from tests.agent.agent_testkit import ArtifactServer, BuiltBundle, Observer, desired_state
from tests.agent.test_daemon import config

REFUSED = 'edgefleet_agent_mqtt_messages_refused_total{reason="too_deep",topic="desired"} 1.0'


def wait_for_metric(url: str, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; /metrics says:\n{text}")
        time.sleep(0.2)


def test_metrics_show_the_link_and_count_a_poison_message(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> None:
    from tests.fixtures.mosquitto import MOSQUITTO, MosquittoBroker

    if not Path(MOSQUITTO).exists():
        pytest.skip(f"mosquitto is not installed ({MOSQUITTO})")
    (tmp_path / "broker").mkdir()
    broker = MosquittoBroker(MOSQUITTO, tmp_path / "broker")
    broker.start()
    artifact_server.behaviour.mqtt = {
        "host": broker.host,
        "port": broker.port,
        "protocol": "5",
        "topic_root": "edgefleet/v1",
        "keepalive": 5,
    }
    artifact_server.add(bundles["1"].model, bundles["1"].tar)
    agent = Agent(config(tmp_path, artifact_server.url), load_profile("x86-64-avx2"), stdout=io.StringIO())
    observer = Observer(broker.host, broker.port)
    try:
        url = agent.start()
        wait_for_metric(url, lambda t: "edgefleet_agent_mqtt_connected 1.0" in t)
        topic = device_topic("dev-9", "desired")
        observer.publish(topic, b"[" * 100_000 + b"]" * 100_000)  # retained, as the tester sent it
        text = wait_for_metric(url, lambda t: REFUSED in t)
        assert "edgefleet_agent_mqtt_connected 1.0" in text
        assert (tmp_path / "data" / "mqtt-quarantine.json").is_file()
        observer.publish(topic, desired_state("dev-9", 1, bundles["1"].model).to_json())
        observer.wait_for(
            lambda o: [
                r for r in o.payloads("reported") if r["generation"] == 1 and r["state"] == "COMMITTED"
            ]
        )
        observer.stop()
        broker.stop()
        wait_for_metric(url, lambda t: "edgefleet_agent_mqtt_connected 0.0" in t)
        assert httpx.get(f"{url}/v2/health/live").status_code == 200  # serving goes on without the broker
    finally:
        agent.stop()
        broker.stop()
