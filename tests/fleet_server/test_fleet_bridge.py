"""The MQTT bridge and the rollout controller against a real Mosquitto (MQTT 5): retained desired
state delivery, reported states driving per-device and deployment states, malformed payloads,
status and telemetry, the persistent session, and a broker restart mid-deployment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.contracts import DesiredState, ReportedState, UpdateState
from fleet_server.db import Device
from tests.fixtures.enroll import enroll

REF = "digits:1.0"


@pytest.fixture
def server(mosquitto_settings: Any, start_app: Any, seed_bundles: Any) -> Any:
    c = start_app(mosquitto_settings)
    c.bundles = seed_bundles(c)
    return c


def setup_rollout(c: Any, *device_ids: str, profile: str = "x86-64-avx2") -> None:
    for d in device_ids:
        r = enroll(c, {"device_id": d, "profile": profile, "labels": {"site": "lab"}})
        assert r.status_code == 200
    assert c.post("/api/v1/groups", json={"name": "lab", "selector": {"site": "lab"}}).status_code == 201


# HEALTHY as soon as a device commits (no post-switch health window), so reports drive states.
INSTANT = {"health_window_s": 0}


def deploy(c: Any, model: str = REF, rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    r = c.post("/api/v1/deployments", json={"model": model, "group": "lab", "rollout": rollout or INSTANT})
    assert r.status_code == 202, r.text
    return dict(r.json())


def dep_state(c: Any, dep_id: int) -> dict[str, Any]:
    return dict(c.get(f"/api/v1/deployments/{dep_id}").json())


def device_states(c: Any, dep_id: int) -> dict[str, str]:
    return {d["device_id"]: d["state"] for d in dep_state(c, dep_id)["devices"]}


def test_desired_state_is_retained_and_reports_drive_the_rollout(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any
) -> None:
    c = server
    setup_rollout(c, "d1", "d2")
    created = deploy(c)
    # The controller's pass (woken by the POST) writes and publishes the desired states.
    dep = wait(lambda: (d := dep_state(c, created["id"]))["state"] == "RUNNING" and d, what="RUNNING")
    assert dep["state"] == "RUNNING", dep
    assert {d["state"] for d in dep["devices"]} == {"NOTIFIED"}
    # Devices connecting after the publish get it: retained.
    dev = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    desired = wait(dev.latest, what="retained desired state")
    assert dev.retained[0] is True
    ds = DesiredState.from_json(json.dumps(desired))
    assert ds.device_id == "d1" and ds.generation == 1 and ds.deployment_id == str(dep["id"])
    (m,) = ds.models
    bundle = c.bundles[("onnx-x86", "int8")]
    assert (m.name, m.version, m.target, m.precision) == ("digits", "1.0", "onnx-x86", "int8")
    assert m.target_path == bundle["target_path"] and m.url == f"/artifacts/{bundle['target_path']}"
    assert (m.size, m.sha256) == (bundle["size"], bundle["sha256"])
    # the URL serves exactly the declared bytes
    import hashlib

    got = c.get(m.url)
    assert (
        got.status_code == 200
        and hashlib.sha256(got.content).hexdigest() == m.sha256
        and len(got.content) == m.size
    )

    dev.report(1, UpdateState.DOWNLOADING, active=None)
    wait(lambda: device_states(c, dep["id"])["d1"] == "DOWNLOADING", what="DOWNLOADING")
    dev.report(1, UpdateState.SELF_TEST)
    wait(lambda: device_states(c, dep["id"])["d1"] == "INSTALLING", what="INSTALLING")
    dev.report(1, UpdateState.COMMITTED, active=REF)
    wait(lambda: device_states(c, dep["id"])["d1"] == "HEALTHY", what="HEALTHY")
    assert dep_state(c, dep["id"])["state"] == "RUNNING"  # d2 still to go

    d2 = make_device("d2", mosquitto_broker.host, mosquitto_broker.port)
    wait(d2.latest)
    d2.report(1, UpdateState.IDLE, active=None, error={"code": "HASH_MISMATCH", "message": "sha256 differs"})
    # One failure of two is over the default gate (none allowed): halted, and rolling back.
    halted = wait(lambda: (s := dep_state(c, dep["id"]))["state"] == "HALTED" and s, what="HALTED")
    assert halted["rollout"]["rollback"]
    assert "1 failed and 0 timed out of 2 devices" in halted["error"], halted["error"]
    row = {d["device_id"]: d for d in halted["devices"]}["d2"]
    assert row["state"] == "FAILED" and row["error"] == {"code": "HASH_MISMATCH", "message": "sha256 differs"}
    # Every touched device is told what it ran before (nothing here): generation 2, no model.
    back = wait(lambda: (m := dev.latest()) and m["generation"] == 2 and m, what="roll-back desired state")
    assert DesiredState.from_json(json.dumps(back)).models == ()
    dev.report(2, UpdateState.IDLE, active=None)
    d2.report(2, UpdateState.IDLE, active=None)
    final = wait(lambda: (s := dep_state(c, dep["id"]))["state"] == "ROLLED_BACK" and s, what="ROLLED_BACK")
    assert {d["device_id"]: d["state"] for d in final["devices"]} == {"d1": "ROLLED_BACK", "d2": "FAILED"}

    detail = c.get("/api/v1/devices/d1").json()
    assert detail["state"] == "IDLE" and detail["active"] is None
    assert detail["reported_generation"] == 2 == detail["desired_generation"]


def test_later_device_gets_the_current_deployment_and_redeploy_bumps_generation(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any, fleet: Any
) -> None:
    c = server
    setup_rollout(c, "d1")
    first = deploy(c)
    # A device registering later with matching labels joins the running deployment.
    enroll(
        c,
        {"device_id": "late", "profile": "x86-64-avx512-vnni", "labels": {"site": "lab"}},
    )
    wait(lambda: "late" in device_states(c, first["id"]), what="late device joins")
    late = make_device("late", mosquitto_broker.host, mosquitto_broker.port)
    assert wait(late.latest)["generation"] == 1
    # A newer deployment supersedes the first; each desired change is one generation more.
    second = deploy(c)
    assert dep_state(c, first["id"])["state"] == "SUPERSEDED"
    assert wait(lambda: (x := late.latest()) and x["generation"] == 2 and x)["deployment_id"] == str(
        second["id"]
    )
    with fleet(c).read_sessions() as s:
        from fleet_server.db import Device

        assert s.get(Device, "d1").desired_generation == 2
    fleet(c).controller.reconcile()  # a pass with nothing new writes nothing
    assert c.get("/api/v1/devices/d1").json()["desired_generation"] == 2


def test_malformed_messages_are_ignored_status_and_telemetry_recorded(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any
) -> None:
    c = server
    setup_rollout(c, "d1")
    dev = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    dev.publish("reported", b"{not json")
    dev.publish("reported", json.dumps({"schema": "edgefleet.reported/1", "device_id": "d1"}).encode())
    dev.publish(
        "reported",
        json.dumps(
            {"schema": "edgefleet.reported/1", "device_id": "other", "generation": 0, "state": "IDLE"}
        ).encode(),
    )
    dev.publish(
        "status", json.dumps({"schema": "edgefleet.status/1", "device_id": "d1", "online": True}).encode()
    )
    wait(lambda: c.get("/api/v1/devices/d1").json()["online"], what="online")
    dev.publish("telemetry", json.dumps({"latency_ms": {"p50": 1.5}, "throughput": 10}).encode())
    wait(lambda: c.get("/api/v1/devices/d1").json()["telemetry"], what="telemetry")
    assert c.get("/api/v1/devices/d1").json()["telemetry"]["throughput"] == 10
    d = c.get("/api/v1/devices/d1").json()
    assert d["reported"] is None and d["state"] is None  # the bad reports changed nothing
    metrics = c.get("/metrics").text
    assert 'edgefleet_mqtt_rejected_messages_total{kind="reported"} 3.0' in metrics
    assert 'edgefleet_mqtt_messages_total{direction="in",kind="telemetry"} 1.0' in metrics
    assert "edgefleet_devices_online 1.0" in metrics
    dev.publish(
        "status", json.dumps({"schema": "edgefleet.status/1", "device_id": "d1", "online": False}).encode()
    )
    wait(lambda: not c.get("/api/v1/devices/d1").json()["online"], what="offline")


def test_reports_sent_while_the_bridge_is_away_arrive_through_its_persistent_session(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any, fleet: Any
) -> None:
    c = server
    setup_rollout(c, "d1")
    dep = deploy(c)
    dev = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    wait(dev.latest)
    fl = fleet(c)
    fl.bridge.stop()  # the server's MQTT side goes away; the broker keeps its session and queues
    dev.report(1, UpdateState.COMMITTED, active=REF)
    assert dep_state(c, dep["id"])["state"] == "RUNNING"
    fl.bridge = fl.make_bridge(fl.mqtt)  # as after a server restart: same client id, same session
    fl.controller.publisher = fl.bridge
    fl.bridge.start()
    wait(lambda: dep_state(c, dep["id"])["state"] == "SUCCEEDED", what="queued report delivered")


def test_broker_restart_that_lost_everything_mid_deployment_ends_healthy(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any, fleet: Any
) -> None:
    c = server
    setup_rollout(c, "d1", "d2")
    dep = deploy(c)
    d1 = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    wait(d1.latest)
    d1.report(1, UpdateState.COMMITTED, active=REF)
    wait(lambda: device_states(c, dep["id"])["d1"] == "HEALTHY")
    # The broker dies and comes back with no retained messages and no sessions.
    connects = fleet(c).bridge.connects
    mosquitto_broker.restart(wipe=True)
    # connected is set once the reconnect's re-publish went out: a device subscribing before that
    # would get the desired state live, not retained.
    bridge = fleet(c).bridge
    wait(
        lambda: bridge.connects > connects and bridge.connected.is_set(), timeout=30, what="bridge reconnects"
    )
    # d2 never got its desired state before the crash; the bridge re-published it on reconnect.
    d2 = make_device("d2", mosquitto_broker.host, mosquitto_broker.port)
    desired = wait(d2.latest, what="re-published desired state")
    assert desired["generation"] == 1 and d2.retained[0] is True
    d2.report(1, UpdateState.COMMITTED, active=REF)
    wait(lambda: dep_state(c, dep["id"])["state"] == "SUCCEEDED", what="SUCCEEDED after restart")
    # d1 had reported its generation: not re-published, no generation bump.
    assert c.get("/api/v1/devices/d1").json()["desired_generation"] == 1


def test_deployment_made_while_the_broker_is_down_reaches_devices_once_it_is_back(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any, fleet: Any
) -> None:
    c = server
    setup_rollout(c, "d1")
    mosquitto_broker.stop()
    wait(lambda: not fleet(c).bridge.connected.is_set(), what="bridge notices")
    created = deploy(c)  # desired state stored; the publish can't go out now
    dep = wait(lambda: (d := dep_state(c, created["id"]))["state"] == "RUNNING" and d, what="RUNNING")
    assert dep["state"] == "RUNNING"
    mosquitto_broker.start()
    wait(lambda: fleet(c).bridge.connected.is_set(), timeout=30, what="bridge reconnects")
    d1 = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    assert wait(d1.latest, what="desired after reconnect")["generation"] == 1
    d1.report(1, UpdateState.COMMITTED, active=REF)
    wait(lambda: dep_state(c, dep["id"])["state"] == "SUCCEEDED")


def test_the_last_will_of_a_replaced_connection_does_not_mark_the_device_offline(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any
) -> None:
    """A device's connections are numbered; the will of connection 4 arriving after the online
    message of connection 5 (a broker restart, a session takeover) is stale. The will of the
    current connection still marks the device offline."""
    c = server
    setup_rollout(c, "d1")
    dev = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)

    def status(online: bool, connection: int) -> None:
        body = {"schema": "edgefleet.status/1", "device_id": "d1", "online": online, "connection": connection}
        dev.publish("status", json.dumps(body).encode())

    status(True, 5)
    wait(lambda: c.get("/api/v1/devices/d1").json()["online"], what="online")
    status(False, 4)  # the old connection's will, late
    # A marker after it on the same link (in order): once it is recorded, the will was handled.
    dev.publish("telemetry", json.dumps({"marker": 1}).encode())
    wait(lambda: c.get("/api/v1/devices/d1").json()["telemetry"], what="the marker")
    assert c.get("/api/v1/devices/d1").json()["online"] is True
    status(False, 5)
    wait(lambda: not c.get("/api/v1/devices/d1").json()["online"], what="offline from the current connection")


def test_an_older_generation_is_never_published_after_a_newer_one(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any, fleet: Any
) -> None:
    """The re-publish on reconnect reads the database at another time than a rollout pass; if it
    comes second with an older generation, the retained desired state must still be the newest."""
    c = server
    setup_rollout(c, "d9")
    bridge = fleet(c).bridge

    bridge.publish_desired(DesiredState(device_id="d9", generation=7))
    bridge.publish_desired(DesiredState(device_id="d9", generation=6))  # late, stale
    dev = make_device("d9", mosquitto_broker.host, mosquitto_broker.port)  # gets the retained one
    got = wait(dev.latest, what="the retained desired state")
    assert got["generation"] == 7


def test_reports_are_ordered_by_seq_not_by_the_device_clock(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any, fleet: Any
) -> None:
    """A board without a real-time clock reboots mid-update and its clock runs behind: its newer
    reports carry older timestamps but a higher seq, and they are recorded. A late duplicate with a
    lower seq is dropped although its timestamp is newer."""
    c = server
    setup_rollout(c, "d1")
    with fleet(c).sessions() as s:  # as if generation 1 had been sent (a report can't be ahead of it)
        s.get(Device, "d1").desired_generation = 1
        s.commit()
    dev = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)

    def report(state: UpdateState, seq: int, ts: float, active: str | None = None) -> None:
        rs = ReportedState(device_id="d1", generation=1, state=state, active=active, seq=seq, ts=ts)
        dev.publish("reported", rs.to_json())

    report(UpdateState.DOWNLOADING, seq=10, ts=2_000_000_000.0)
    wait(lambda: c.get("/api/v1/devices/d1").json()["state"] == "DOWNLOADING", what="downloading")
    report(UpdateState.COMMITTED, seq=14, ts=1_000_000_000.0, active=REF)  # clock reset to 2001
    wait(lambda: c.get("/api/v1/devices/d1").json()["state"] == "COMMITTED", what="the newer report")
    report(UpdateState.INSTALLING, seq=12, ts=2_000_000_100.0)  # a late duplicate
    dev.publish("telemetry", json.dumps({"marker": 1}).encode())  # in order after it on this link
    wait(lambda: c.get("/api/v1/devices/d1").json()["telemetry"], what="the marker")
    d = c.get("/api/v1/devices/d1").json()
    assert d["state"] == "COMMITTED" and d["active"] == REF


def test_on_reconnect_devices_in_the_middle_of_an_update_get_their_desired_state_again(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any, fleet: Any
) -> None:
    """A restarted broker may drop reports while the server is not subscribed yet ("no matching
    subscribers"). On reconnect the server re-sends the desired state to every device whose last
    report is not the end of its update, and the device answers with where it stands."""
    c = server
    setup_rollout(c, "d1")
    deploy(c)
    dev = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    first = wait(dev.latest, what="the desired state")
    dev.report(first["generation"], UpdateState.INSTALLING)
    wait(lambda: c.get("/api/v1/devices/d1").json()["state"] == "INSTALLING", what="installing")
    n = len(dev.desired)
    assert fleet(c).bridge.republish_behind() == 1  # what the bridge does on every (re)connect
    wait(lambda: len(dev.desired) > n, what="the desired state again")
    dev.report(first["generation"], UpdateState.COMMITTED, active=REF)
    wait(lambda: c.get("/api/v1/devices/d1").json()["state"] == "COMMITTED", what="committed")
    assert fleet(c).bridge.republish_behind() == 0  # a final report: nothing owed


def test_a_report_ahead_of_the_generation_sent_is_refused(
    server: Any, mosquitto_broker: Any, make_device: Any, wait: Any
) -> None:
    """A device can't claim a generation the server never sent it: stored, it would make every
    real report after it look stale (the forged 1,000,000 that froze the server's view)."""
    c = server
    setup_rollout(c, "d1")
    dev = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    ahead = ReportedState(device_id="d1", generation=1_000_000, state=UpdateState.COMMITTED, seq=5)
    dev.publish("reported", ahead.to_json())
    dev.publish(
        "reported", ReportedState(device_id="d1", generation=0, state=UpdateState.IDLE, seq=6).to_json()
    )
    wait(lambda: c.get("/api/v1/devices/d1").json()["state"] == "IDLE", what="the real report")
    d = c.get("/api/v1/devices/d1").json()
    assert d["reported_generation"] == 0
    assert 'reason="out_of_range"' in c.get("/metrics").text
