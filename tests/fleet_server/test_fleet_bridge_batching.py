"""Reported states from the broker are stored in batches by the bridge's writer thread, against a
real Mosquitto (MQTT 5): while the database is held by another writer, paho's thread goes on
reading (it never waits on the database), what queued is stored in a few transactions, each
device ends at its newest report, and a refused report in a batch does not cost the others."""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.contracts import ReportedState, UpdateState, device_topic
from fleet_server.mqtt_bridge import REPORT_BATCH
from tests.fixtures.enroll import enroll

DEVICES = 60
STEPS = (UpdateState.IDLE, UpdateState.DOWNLOADING, UpdateState.INSTALLING, UpdateState.IDLE)


@pytest.fixture
def server(mosquitto_settings: Any, start_app: Any) -> Any:
    c = start_app(mosquitto_settings)
    for i in range(DEVICES):
        r = enroll(c, {"device_id": f"b{i:03d}", "profile": "x86-64-avx2"})
        assert r.status_code == 200, r.text
    return c


def received(fleet: Any) -> float:
    value = fleet.metrics.registry.get_sample_value(
        "edgefleet_mqtt_messages_total", {"direction": "in", "kind": "reported"}
    )
    return float(value or 0.0)


def test_a_burst_of_reports_is_stored_in_a_few_transactions_newest_last(
    server: Any, mosquitto_broker: Any, fleet: Any, wait: Any
) -> None:
    c = server
    f = fleet(c)
    bridge = f.bridge
    assert bridge.wait_connected(10)
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(mosquitto_broker.host, mosquitto_broker.port)
    pub.loop_start()
    try:
        before, batches = received(f), bridge.report_batches
        sent = 0
        with f.engine.begin() as conn:  # BEGIN IMMEDIATE: the writer must wait for this
            conn.exec_driver_sql("SELECT 1")
            for seq, state in enumerate(STEPS, start=1):
                for i in range(DEVICES):
                    device = f"b{i:03d}"
                    rs = ReportedState(
                        device_id=device, generation=0, state=state, active=f"m:{seq}", seq=seq
                    )
                    pub.publish(device_topic(device, "reported"), rs.to_json(), qos=1).wait_for_publish(5)
                    sent += 1
            # one report ahead of anything the server sent: refused alone, inside a batch
            bad = ReportedState(device_id="b000", generation=7, state=UpdateState.IDLE, seq=99)
            pub.publish(device_topic("b000", "reported"), bad.to_json(), qos=1).wait_for_publish(5)
            sent += 1
            # paho's thread reads every message while the database is held
            wait(lambda: received(f) - before >= sent, timeout=20, what="the bridge to read every report")
            time.sleep(0.2)
            assert bridge.report_batches == batches  # nothing stored yet: the lock is held
        newest, ids = f"m:{len(STEPS)}", [f"b{i:03d}" for i in range(DEVICES)]
        wait(
            lambda: all(c.get(f"/api/v1/devices/{d}").json()["active"] == newest for d in ids),
            timeout=20,
            what="every device at its newest report",
        )
        # at most one writer transaction was waiting on the lock with one report; the rest queued
        assert bridge.report_batches - batches <= 2 + sent // REPORT_BATCH
        body = c.get("/api/v1/devices/b000").json()
        assert body["reported_generation"] == 0 and body["state"] == "IDLE"
        metrics = c.get("/metrics").text
        assert (
            'edgefleet_server_mqtt_messages_rejected_total{reason="out_of_range",topic_kind="reported"} 1.0'
            in metrics
        )
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_handle_stores_at_once_and_says_whether_it_stored(server: Any, fleet: Any) -> None:
    """The synchronous path (tests, anything that is not paho) goes through the same store."""
    c = server
    bridge = fleet(c).bridge
    rs = ReportedState(device_id="b001", generation=0, state=UpdateState.IDLE, active="m:1", seq=5)
    topic = device_topic("b001", "reported")
    assert bridge.handle(topic, rs.to_json()) is True
    assert c.get("/api/v1/devices/b001").json()["active"] == "m:1"
    older = json.loads(rs.to_json()) | {"seq": 4, "active": "m:0"}
    assert bridge.handle(topic, json.dumps(older).encode()) is False  # stale: kept the newest
    assert c.get("/api/v1/devices/b001").json()["active"] == "m:1"
    stranger = ReportedState(device_id="nobody", generation=0, state=UpdateState.IDLE, seq=1)
    assert bridge.handle(device_topic("nobody", "reported"), stranger.to_json()) is False
