"""Poison messages on every device topic, against a real Mosquitto (MQTT 5): each is dropped and
counted by kind and reason, nothing of it is stored, the bridge keeps its one connection, and a
good report sent after them lands."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from agent.contracts import ReportedState, Status, UpdateState
from tests.fixtures.enroll import enroll

REPORTED = {"schema": "edgefleet.reported/1", "device_id": "d1", "state": "IDLE"}
STATUS = {"schema": "edgefleet.status/1", "device_id": "d1", "online": True}
# Deeper than the parser's recursion limit (it raised RecursionError) yet under every byte bound.
NESTED = b'{"a": ' + b"[" * 1500 + b"]" * 1500 + b"}"
HUGE = json.dumps({"blob": "x" * 200_000}).encode()  # over every topic's payload bound
# Over the bridge's MQTT 5 Maximum Packet Size: the broker drops it for the bridge, which never
# reads it (nor counts it).
HUGER = json.dumps({"blob": "x" * 5_000_000}).encode()

# (topic kind, payload, the reason it is counted under)
POISONS: list[tuple[str, bytes, str]] = [
    ("reported", json.dumps(REPORTED | {"generation": 2**63}).encode(), "out_of_range"),
    ("reported", json.dumps(REPORTED | {"generation": -1}).encode(), "out_of_range"),
    ("reported", json.dumps(REPORTED | {"generation": 1, "seq": 2**64}).encode(), "out_of_range"),
    ("status", json.dumps(STATUS | {"connection": 2**63}).encode(), "out_of_range"),
    ("telemetry", b'{"cpu_percent": NaN}', "not_json"),
    ("telemetry", b'{"cpu_percent": 1e999}', "not_json"),
    ("reported", b"\xff\xfe not utf-8", "not_json"),
    ("reported", b"[" * 100_000 + b"]" * 100_000, "too_large"),  # the 200 KB one from the issue
]
for _kind in ("reported", "status", "telemetry"):  # the same poisons on every device topic
    POISONS += [
        (_kind, NESTED, "too_deep"),
        (_kind, HUGE, "too_large"),
        (_kind, b"{not json", "not_json"),
        (_kind, b'{"x": NaN}', "not_json"),
        (_kind, b"[1, 2]", "contract"),
    ]


@pytest.fixture
def server(mosquitto_settings: Any, start_app: Any) -> Any:
    c = start_app(mosquitto_settings)
    r = enroll(c, {"device_id": "d1", "profile": "x86-64-avx2"})
    assert r.status_code == 200
    return c


def test_poison_messages_are_dropped_counted_and_the_bridge_stays_up(
    server: Any,
    mosquitto_broker: Any,
    make_device: Any,
    wait: Any,
    fleet: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = server
    bridge = fleet(c).bridge
    assert bridge.wait_connected(10)
    connects = bridge.connects
    dev = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    with caplog.at_level(logging.DEBUG, logger="fleet_server"):
        for kind, payload, _reason in POISONS:
            dev.publish(kind, payload)
        for kind in ("reported", "status", "telemetry"):
            dev.publish(kind, HUGER)
        good = ReportedState(device_id="d1", generation=0, state=UpdateState.IDLE, active="digits:1.0", seq=3)
        dev.publish("reported", good.to_json())
        dev.publish("status", Status(device_id="d1", online=True, connection=2).to_json())
        wait(lambda: c.get("/api/v1/devices/d1").json()["active"] == "digits:1.0", what="the good report")
        wait(lambda: c.get("/api/v1/devices/d1").json()["online"], what="the good status")

    assert bridge.connected.is_set() and bridge.connects == connects  # never dropped the link
    d = c.get("/api/v1/devices/d1")
    assert d.status_code == 200
    body = d.json()
    assert body["reported_generation"] == 0 and body["telemetry"] is None
    assert len(d.content) < 10_000
    metrics = c.get("/metrics").text
    expected: dict[tuple[str, str], int] = {}
    for kind, _payload, reason in POISONS:
        expected[(kind, reason)] = expected.get((kind, reason), 0) + 1
    for (kind, reason), n in expected.items():
        line = f'edgefleet_server_mqtt_messages_rejected_total{{reason="{reason}",topic_kind="{kind}"}} {n}.0'
        assert line in metrics, line
    # The log names what was dropped, never the payload itself.
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "xxxxxxxxxx" not in text and "[[[[[[[[[[" not in text
    assert max(len(r.getMessage()) for r in caplog.records) < 1000
    assert re.search(r"dropped reported from d1: too_deep", text), text[-2000:]


def test_an_exception_from_the_report_callback_is_counted_and_the_bridge_stays_up(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any, fleet: Any
) -> None:
    """The callback that wakes the rollout controller after a report must not take the bridge
    down with it: the report is stored, the failure counted."""
    c = server
    bridge = fleet(c).bridge
    assert bridge.wait_connected(10)

    def boom() -> None:
        raise RuntimeError("controller gone")

    bridge._on_report = boom
    dev = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    dev.publish(
        "reported", ReportedState(device_id="d1", generation=0, state=UpdateState.IDLE, seq=1).to_json()
    )
    line = 'edgefleet_server_mqtt_messages_rejected_total{reason="error",topic_kind="reported"} 1.0'
    wait(lambda: line in c.get("/metrics").text, what="the failure counted")
    assert c.get("/api/v1/devices/d1").json()["state"] == "IDLE"
    assert bridge.connected.is_set()
