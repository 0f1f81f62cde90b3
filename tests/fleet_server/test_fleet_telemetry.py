"""Fleet telemetry on the server: ingest over real Mosquitto through the bridge, storage, REST
queries and gauges; the rollup job with explicit times; and the figures the rollout gates read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.contracts import Latency, OutputStats, Telemetry
from fleet_server import db
from fleet_server.db import Device, TelemetryRollup, TelemetryRow
from fleet_server.metrics import Metrics
from fleet_server.telemetry import (
    TelemetryIngest,
    TelemetryJobs,
    figures_since,
    model_figures,
    rollup_figures,
)
from tests.fixtures.enroll import enroll

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def window(device: str, model: str | None, at: datetime, **kw: Any) -> Telemetry:
    return Telemetry(device_id=device, ts=at.timestamp(), window_s=5.0, model=model, **kw)


# -- the whole path: device → Mosquitto → bridge → table → REST and /metrics ------------------


def test_bridge_stores_contract_telemetry_and_serves_it(
    mosquitto_settings: Any, start_app: Any, make_device: Any, mosquitto_broker: Any, wait: Any, fleet: Any
) -> None:
    c = start_app(mosquitto_settings)
    for d in ("d1", "d2"):
        r = enroll(c, {"device_id": d, "profile": "x86-64-avx2", "labels": {}})
        assert r.status_code == 200, r.text
    r = c.post("/api/v1/groups", json={"name": "lab", "devices": ["d1"]})
    assert r.status_code in (200, 201), r.text
    now = datetime.now(UTC)
    d1 = make_device("d1", mosquitto_broker.host, mosquitto_broker.port)
    d2 = make_device("d2", mosquitto_broker.host, mosquitto_broker.port)
    d1.publish(
        "telemetry",
        window(
            "d1", "m:1", now, requests=10, errors=1, latency=Latency(2.0, 4.0, 8.0), classes={"0": 6, "1": 3}
        ).to_json(),
    )
    d1.publish(
        "telemetry", window("d1", "m:1", now, requests=10, latency=Latency(3.0, 8.0, 9.0), seq=2).to_json()
    )
    d2.publish("telemetry", window("d2", "m:1", now, requests=30, errors=3, classes={"1": 27}).to_json())
    # Breaks the contract (more errors than requests): refused and counted, nothing stored.
    d2.publish(
        "telemetry",
        json.dumps(
            {"schema": "edgefleet.telemetry/1", "device_id": "d2", "requests": 1, "errors": 2}
        ).encode(),
    )
    # From a device that never registered: not stored.
    make_device("ghost", mosquitto_broker.host, mosquitto_broker.port).publish(
        "telemetry", window("ghost", "m:1", now, requests=5).to_json()
    )

    def stored() -> int:
        fleet(c).telemetry.flush()
        with fleet(c).read_sessions() as s:
            return len(s.scalars(select(TelemetryRow)).all())

    wait(lambda: stored() == 3, what="three stored windows")

    def counted() -> str | None:
        m = c.get("/metrics").text
        return m if 'reason="contract"' in m and "unknown_device" in m else None

    metrics = wait(counted, what="the refusals counted")
    assert (
        'edgefleet_server_mqtt_messages_rejected_total{reason="contract",topic_kind="telemetry"} 1.0'
        in metrics
    )
    assert 'edgefleet_telemetry_messages_total{outcome="stored"} 3.0' in metrics
    assert 'edgefleet_telemetry_messages_total{outcome="unknown_device"} 1.0' in metrics
    assert 'edgefleet_model_requests_total{model="m:1"} 50.0' in metrics
    assert 'edgefleet_model_errors_total{model="m:1"} 4.0' in metrics
    assert 'edgefleet_model_error_ratio{model="m:1"} 0.08' in metrics
    # p95 weighted by answered requests: (4*9 + 8*10) / 19 (d2 sent no latency)
    assert f'edgefleet_model_latency_p95_ms{{model="m:1"}} {(4 * 9 + 8 * 10) / 19}' in metrics
    assert 'edgefleet_model_devices_reporting{model="m:1"} 2.0' in metrics

    rows = c.get("/api/v1/devices/d1/telemetry", params={"limit": 1}).json()["windows"]
    assert len(rows) == 1 and rows[0]["model"] == "m:1"
    both = c.get("/api/v1/devices/d1/telemetry").json()["windows"]
    assert sorted(w["requests"] for w in both) == [10, 10]
    assert c.get("/api/v1/devices/d1").json()["telemetry"]["requests"] == 10  # latest on the row
    assert c.get("/api/v1/devices/nope/telemetry").status_code == 404

    fleet_all = c.get("/api/v1/telemetry/summary", params={"model": "m:1"}).json()
    f = fleet_all["figures"]
    assert fleet_all["source"] == "raw"
    assert (f["requests"], f["errors"], f["devices"]) == (50, 4, 2)
    assert f["class_counts"] == {"0": 6, "1": 30}
    lab = c.get("/api/v1/telemetry/summary", params={"model": "m:1", "group": "lab"}).json()["figures"]
    assert (lab["requests"], lab["errors"], lab["devices"]) == (20, 1, 1)
    assert lab["error_rate"] == pytest.approx(0.05)
    assert c.get("/api/v1/telemetry/summary", params={"model": "m:1", "group": "nope"}).status_code == 404
    # The rollup job's minute series shows up once it ran.
    fleet(c).telemetry_jobs.lag_s = 0
    summed, _, _ = fleet(c).telemetry_jobs.run_once()
    assert summed == 3
    s = c.get("/api/v1/telemetry/summary", params={"model": "m:1"}).json()["series"]
    assert sum(p["requests"] for p in s) == 50 and sum(p["errors"] for p in s) == 4


def test_telemetry_routes_need_a_viewer(settings: Any, start_app: Any) -> None:
    c = start_app(settings.model_copy(update={"token": "secret"}))
    assert c.get("/api/v1/telemetry/summary", params={"model": "m:1"}).status_code == 401
    ok = c.get(
        "/api/v1/telemetry/summary", params={"model": "m:1"}, headers={"Authorization": "Bearer secret"}
    )
    assert ok.status_code == 200 and ok.json()["figures"]["error_rate"] is None


# -- storage, rollups and figures over a real (SQLite) database --------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated database with devices d0..d3: SQLite, and PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = db.make_engine(url)
    db.upgrade(engine)
    made = db.make_sessions(engine)
    with made.begin() as s:
        for i in range(4):
            s.add(Device(device_id=f"d{i}", profile="x86-64-avx2", target="onnx-x86"))
    yield made
    engine.dispose()


def store(sessions: sessionmaker[Session], *msgs: Telemetry, at: datetime = T0) -> None:
    ingest = TelemetryIngest(sessions, Metrics(), clock=lambda: at)
    for m in msgs:
        ingest.submit(m.device_id, m, json.loads(m.to_json()))
    ingest.write_pending()


def test_model_figures_sum_weight_and_filter(sessions: sessionmaker[Session]) -> None:
    store(
        sessions,
        window(
            "d0",
            "m:1",
            T0,
            requests=10,
            errors=2,
            latency=Latency(1, 10, 20),
            offload_ratio=0.5,
            classes={"0": 8},
        ),
        window(
            "d1",
            "m:1",
            T0,
            requests=30,
            latency=Latency(1, 2, 3),
            offload_ratio=0.0,
            classes={"0": 10, "1": 20},
        ),
        window("d2", "m:1", T0, requests=5, errors=5),
        window("d1", "m:2", T0, requests=100, latency=Latency(1, 99, 99)),  # another version
        window("d0", "m:1", T0 - timedelta(hours=1), requests=1000, errors=1000),  # before since
        window(
            "d3", "r:1", T0, requests=4, outputs={"y": OutputStats(count=10, mean=1.0, std=0, min=1, max=1)}
        ),
        window(
            "d3", "r:1", T0, requests=4, outputs={"y": OutputStats(count=30, mean=3.0, std=0, min=3, max=3)}
        ),
        at=T0,
    )
    since = T0 - timedelta(minutes=5)
    with sessions() as s:
        f = model_figures(s, ["d0", "d1", "d2"], "m:1", since)
        assert (f.requests, f.errors, f.devices, f.windows) == (45, 7, 3, 3)
        assert f.error_rate == pytest.approx(7 / 45)
        assert f.p95_ms == pytest.approx((10 * 8 + 2 * 30) / 38)  # weighted by answered requests
        assert f.offload_ratio == pytest.approx(0.5 * 8 / 38)
        assert f.class_counts == {"0": 18, "1": 20}
        only = model_figures(s, ["d1"], "m:1", since)
        assert (only.requests, only.p95_ms, only.class_counts) == (30, 2.0, {"0": 10, "1": 20})
        # Thousands of ids go in chunks; unknown ones change nothing.
        many = [f"x{i}" for i in range(1200)] + ["d0", "d1", "d2"]
        assert model_figures(s, many, "m:1", since) == f
        none = model_figures(s, ["d2"], "m:1", since)
        assert none.p95_ms is None and none.error_rate == 1.0 and none.offload_ratio is None
        empty = model_figures(s, [], "m:1", since)
        assert empty.requests == 0 and empty.error_rate is None
        assert model_figures(s, ["d3"], "r:1", since).output_means == {"y": pytest.approx(2.5)}
        assert figures_since(s, ["d0", "d1", "d2"], "m:1", since.timestamp()) == f
        assert figures_since(s, ["d0"], "m:9", since.timestamp()) is None  # no window at all
        if s.get_bind().dialect.name != "sqlite":
            return
        q = select(TelemetryRow.requests).where(TelemetryRow.model == "m:1", TelemetryRow.ts >= since)
        sql = str(q.compile(s.get_bind(), compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(r) for r in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "ix_telemetry_model_ts" in plan  # an index range, not a scan of every row


def test_rollups_merge_by_adding_and_retention_prunes(sessions: sessionmaker[Session]) -> None:
    jobs = TelemetryJobs(sessions, raw_keep=timedelta(hours=24), rollup_keep=timedelta(days=30), lag_s=5)
    store(
        sessions,
        window(
            "d0", "m:1", T0 + timedelta(seconds=10), requests=10, latency=Latency(1, 4, 5), classes={"0": 10}
        ),
        window(
            "d0",
            "m:1",
            T0 + timedelta(seconds=40),
            requests=30,
            errors=3,
            latency=Latency(1, 8, 9),
            classes={"0": 7, "2": 20},
        ),
        window("d1", "m:1", T0 + timedelta(seconds=70), requests=5),  # the next minute
        at=T0 + timedelta(seconds=80),
    )
    assert jobs.run_once(T0 + timedelta(seconds=82)) == (0, 0, 0)  # received under the lag ago
    assert jobs.run_once(T0 + timedelta(seconds=90))[0] == 3
    assert jobs.run_once(T0 + timedelta(seconds=91))[0] == 0  # nothing is summed twice
    with sessions() as s:
        rolled = {(r.device_id, r.bucket.replace(tzinfo=UTC)): r for r in s.scalars(select(TelemetryRollup))}
    r0 = rolled[("d0", T0)]
    assert (r0.windows, r0.requests, r0.errors, r0.latency_weight) == (2, 40, 3, 37)
    assert r0.p95_sum == pytest.approx(4 * 10 + 8 * 27) and r0.p95_max == 8
    assert r0.classes == {"0": 17, "2": 20}
    assert rolled[("d1", T0 + timedelta(minutes=1))].requests == 5
    # A late window (replayed from a device's buffer) adds into its own, already rolled minute.
    store(
        sessions,
        window("d0", "m:1", T0 + timedelta(seconds=50), requests=2, classes={"2": 2}),
        at=T0 + timedelta(minutes=5),
    )
    jobs.run_once(T0 + timedelta(minutes=6))
    since = T0 - timedelta(minutes=1)
    with sessions() as s:
        raw = model_figures(s, None, "m:1", since)
        from_rollups = rollup_figures(s, None, "m:1", since)
        assert (from_rollups.requests, from_rollups.errors) == (raw.requests, raw.errors) == (47, 3)
        assert from_rollups.class_counts == raw.class_counts == {"0": 17, "2": 22}
        assert from_rollups.p95_ms == pytest.approx(raw.p95_ms)
    # A day later the raw rows go, the rollups stay; a month later those go too.
    _, raw_gone, _ = jobs.run_once(T0 + timedelta(hours=25))
    assert raw_gone == 4
    with sessions() as s:
        assert s.scalars(select(TelemetryRow)).all() == []
        assert rollup_figures(s, ["d0", "d1"], "m:1", since).requests == 47
    assert jobs.run_once(T0 + timedelta(days=31))[2] == 2


def test_a_device_clock_far_ahead_is_not_believed(sessions: sessionmaker[Session]) -> None:
    store(sessions, window("d0", "m:1", T0 + timedelta(days=3), requests=1), at=T0)
    with sessions() as s:
        (row,) = s.scalars(select(TelemetryRow)).all()
        assert row.ts.replace(tzinfo=UTC) == T0


def test_a_redelivered_window_is_stored_once(sessions: sessionmaker[Session]) -> None:
    w = window("d0", "m:1", T0, requests=3, seq=7)
    store(sessions, w, w)  # twice in one batch
    ingest = TelemetryIngest(sessions, Metrics(), clock=lambda: T0)
    for m in (w, window("d0", "m:1", T0, requests=3), window("d0", "m:1", T0, requests=3)):
        ingest.submit("d0", m, json.loads(m.to_json()))  # again in a later batch; and two seq-less
    ingest.write_pending()
    with sessions() as s:
        assert model_figures(s, ["d0"], "m:1", T0 - timedelta(minutes=1)).requests == 9


def test_the_largest_message_the_contract_allows_fits_the_servers_bound() -> None:
    from agent.contracts.telemetry import MAX_CLASSES, MAX_COUNT, MAX_OUTPUTS
    from fleet_server.limits import MESSAGE_LIMITS

    big = 1.2345678901234567e300
    t = Telemetry(
        device_id="d" * 128,
        model="m" * 300,
        requests=MAX_COUNT,
        errors=MAX_COUNT,
        latency=Latency(big, big, big),
        classes={f"{i:016d}": MAX_COUNT for i in range(MAX_CLASSES)},
        outputs={f"{i:0128d}": OutputStats(MAX_COUNT, big, big, -big, big) for i in range(MAX_OUTPUTS)},
        seq=MAX_COUNT,
        dropped=MAX_COUNT,
    )
    payload = t.to_json()
    assert len(payload) < 16 * 1024 < MESSAGE_LIMITS.telemetry_bytes
    assert Telemetry.from_json(payload) == t
