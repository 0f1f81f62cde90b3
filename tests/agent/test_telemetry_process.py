"""Telemetry from the agent as a real process over real Mosquitto: figures after inference
requests, and the offline buffer across a broker outage (what the bound dropped is counted)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.contracts import Telemetry, device_topic
from tests.agent.agent_testkit import AgentProcess, ArtifactServer, BuiltBundle, Observer, desired_state
from tests.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
DEVICE = "telemetry-box-1"
X = np.random.default_rng(5).standard_normal((2, 4)).astype(np.float32)


class TelemetrySink:
    """A persistent-session subscriber to the device's telemetry: the broker keeps what arrives
    while this client is away (during a broker restart), as it does for the fleet server."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: list[Telemetry] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sink-{time.monotonic_ns()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(device_topic(DEVICE, "telemetry"), qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect(host, port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        t = Telemetry.from_json(msg.payload)
        with self._lock:
            self.messages.append(t)

    def of(self, model: str | None = None) -> list[Telemetry]:
        with self._lock:
            return [m for m in self.messages if model is None or m.model == model]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def sink(mosquitto_broker: Any) -> Iterator[TelemetrySink]:
    s = TelemetrySink(mosquitto_broker.host, mosquitto_broker.port)
    wait_until(s.client.is_connected, what="the telemetry sink's connection")
    yield s
    s.stop()


@pytest.fixture
def agent(
    tmp_path: Any, fleet: ArtifactServer, mosquitto_broker: Any, bundles: dict[str, BuiltBundle]
) -> Iterator[AgentProcess]:
    """An agent with a 0.3 s telemetry window, a 4-message offline buffer, serving linear:1."""
    proc = AgentProcess(
        tmp_path / "data",
        fleet.url,
        DEVICE,
        "--telemetry-interval",
        "0.3",
        "--telemetry-buffer-messages",
        "4",
    )
    obs = Observer(mosquitto_broker.host, mosquitto_broker.port)
    try:
        proc.wait_ready()
        obs.publish(device_topic(DEVICE, "desired"), desired_state(DEVICE, 1, bundles["1"].model).to_json())
        obs.wait_for(
            lambda o: [
                r for r in o.payloads("reported") if r["generation"] == 1 and r["state"] == "COMMITTED"
            ]
        )
        yield proc
    finally:
        obs.stop()
        if proc.proc.poll() is None:
            proc.kill()


def infer(url: str) -> None:
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    assert httpx.post(f"{url}/v2/models/linear/infer", json=body, timeout=10).status_code == 200


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_telemetry_has_latency_percentiles_and_class_counts(
    agent: AgentProcess, sink: TelemetrySink, bundles: dict[str, BuiltBundle]
) -> None:
    for _ in range(5):
        infer(agent.url)
    bad = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}
    assert httpx.post(f"{agent.url}/v2/models/linear/infer", json=bad, timeout=10).status_code == 400

    def counted() -> list[Telemetry] | None:
        msgs = [m for m in sink.of("linear:1") if m.requests]
        return msgs if sum(m.requests for m in msgs) == 6 else None

    msgs = wait_until(counted, what="telemetry counting the 6 requests")
    assert sum(m.errors for m in msgs) == 1
    # The model's logits are [batch, 3]: every row's argmax counted, 2 rows x 5 answered requests.
    classes: dict[str, int] = {}
    for m in msgs:
        for k, n in (m.classes or {}).items():
            classes[k] = classes.get(k, 0) + n
    from tests.agent.agent_testkit import ort_run

    expected = np.argmax(ort_run(bundles["1"].onnx, {"input": X})["logits"], axis=1)
    assert classes == {str(c): 5 * int((expected == c).sum()) for c in set(expected.tolist())}
    with_latency = [m for m in msgs if m.latency is not None]
    assert with_latency
    for m in with_latency:
        lat = m.latency
        assert (
            lat is not None and lat.p50_ms is not None and lat.p95_ms is not None and lat.p99_ms is not None
        )
        assert 0 < lat.p50_ms <= lat.p95_ms <= lat.p99_ms < 10_000
        assert m.throughput_rps is not None and m.throughput_rps > 0
        assert m.offload_ratio == 0.0 and m.queue_depth == 0
    every = sink.of()
    assert all(m.memory_mb and m.memory_mb > 10 for m in every)
    assert all(m.cpu_percent is not None and m.cpu_percent >= 0 for m in every)
    # Idle windows still report the serving model, with no requests.
    wait_until(lambda: [m for m in sink.of("linear:1") if m.requests == 0], what="an idle window")
    text = httpx.get(f"{agent.url}/metrics", timeout=5).text
    assert 'edgefleet_agent_model_info{model="linear",version="1"} 1.0' in text
    assert 'edgefleet_agent_queue_depth{model="linear:1"} 0.0' in text
    assert metric(agent.url, "edgefleet_agent_telemetry_messages_total") > 0


def test_telemetry_buffered_while_the_broker_is_down_arrives_minus_what_was_dropped(
    agent: AgentProcess, sink: TelemetrySink, mosquitto_broker: Any
) -> None:
    wait_until(lambda: len(sink.of()) >= 2, what="telemetry before the outage")
    mosquitto_broker.stop()
    infer(agent.url)  # a request during the outage: its window is buffered (or dropped, and counted)
    # A 4-message buffer at 0.3 s windows overflows in about a second: wait for drops.
    wait_until(
        lambda: metric(agent.url, "edgefleet_agent_telemetry_dropped_total") >= 3,
        timeout=30,
        what="the offline buffer dropping its oldest",
    )
    assert metric(agent.url, "edgefleet_agent_telemetry_buffered") == 4
    mosquitto_broker.start()
    restarted = time.time()

    def settled() -> tuple[list[int], int] | None:
        seqs = sorted({m.seq for m in sink.of() if m.seq is not None})
        dropped = sum(m.dropped for m in {m.seq: m for m in sink.of()}.values())
        missing = [s for s in range(seqs[0], seqs[-1] + 1) if s not in seqs]
        fresh = [m for m in sink.of() if m.ts > restarted]
        if dropped and fresh and len(missing) == dropped:
            return missing, dropped
        return None

    missing, dropped = wait_until(settled, timeout=60, what="the buffered telemetry and the drop count")
    assert dropped >= 3 and len(missing) == dropped
    # The drops were the oldest of the outage: one run of consecutive numbers.
    assert missing == list(range(missing[0], missing[0] + len(missing)))
    assert metric(agent.url, "edgefleet_agent_telemetry_dropped_total") == dropped
    assert metric(agent.url, "edgefleet_agent_telemetry_messages_total") > 0
    wait_until(lambda: metric(agent.url, "edgefleet_agent_telemetry_buffered") == 0, what="an empty buffer")
    # Messages arrived in the order they were made.
    seqs = [m.seq for m in sink.of() if m.seq is not None]
    firsts = list(dict.fromkeys(seqs))  # a QoS 1 duplicate may repeat one; order is what counts
    assert firsts == sorted(firsts)
    assert json.loads(sink.of()[-1].to_json())["schema"] == "edgefleet.telemetry/1"
