"""``GET /api/v1/fleet/summary`` (aggregated) and the paged, searchable ``GET /api/v1/devices``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.enroll import enroll


@pytest.fixture
def client(settings: Any, start_app: Any) -> Any:
    return start_app(settings)


def register(client: Any, device_id: str, profile: str = "x86-64-avx2") -> None:
    r = enroll(client, {"device_id": device_id, "profile": profile})
    assert r.status_code == 200, r.text


def set_device(client: Any, device_id: str, **values: Any) -> None:
    from fleet_server.db import Device

    with client.app.state.fleet.sessions() as s:
        dev = s.get(Device, device_id)
        for k, v in values.items():
            setattr(dev, k, v)
        s.commit()


def test_fleet_summary_counts_devices_online_models_and_profiles(client: Any) -> None:
    empty = client.get("/api/v1/fleet/summary").json()
    assert empty["devices"] == 0 and empty["online"] == 0 and empty["models"] == []
    for i in range(5):
        register(client, f"d{i}", "x86-64-avx2" if i < 3 else "x86-64-avx512-vnni")
    set_device(client, "d0", active="digits:2", online=True)
    set_device(client, "d1", active="digits:2", online=True)
    set_device(client, "d2", active="digits:1")
    s = client.get("/api/v1/fleet/summary").json()
    assert (s["devices"], s["online"]) == (5, 2)
    assert s["models"] == [
        {"model": "digits:2", "devices": 2, "online": 2},
        {"model": None, "devices": 2, "online": 0},
        {"model": "digits:1", "devices": 1, "online": 0},
    ]
    assert s["profiles"] == [
        {"profile": "x86-64-avx2", "devices": 3, "online": 2},
        {"profile": "x86-64-avx512-vnni", "devices": 2, "online": 0},
    ]
    assert s["other_models"] == {"buckets": 0, "devices": 0}


def test_fleet_summary_sums_the_long_tail(client: Any) -> None:
    for i in range(25):
        register(client, f"d{i:02d}")
        set_device(client, f"d{i:02d}", active=f"m:{i}")
    s = client.get("/api/v1/fleet/summary").json()
    assert len(s["models"]) == 20 and s["other_models"] == {"buckets": 5, "devices": 5}
    assert sum(b["devices"] for b in s["models"]) + s["other_models"]["devices"] == 25


def test_devices_page_search_and_total(client: Any) -> None:
    for i in range(12):
        register(client, f"cam-{i:02d}", "x86-64-avx2" if i % 2 else "x86-64-avx512-vnni")
    set_device(client, "cam-03", active="digits:7", telemetry={"latency": {"p95_ms": 4.5}})
    set_device(client, "cam-04", telemetry={"latency": {"p95_ms": "fast"}})  # stored as sent: ignored
    everything = client.get("/api/v1/devices")
    assert everything.headers["X-Total-Count"] == "12" and len(everything.json()) == 12  # as before
    page = client.get("/api/v1/devices?limit=5&offset=5")
    assert page.headers["X-Total-Count"] == "12"
    assert [d["device_id"] for d in page.json()] == [f"cam-{i:02d}" for i in range(5, 10)]
    assert len(client.get("/api/v1/devices?limit=5&offset=10").json()) == 2
    # past what the database's integers hold: refused as a bad request, not a 500 from SQLite
    assert client.get(f"/api/v1/devices?offset={2**63}").status_code == 400
    assert client.get(f"/api/v1/devices?offset={2**31 - 1}").json() == []
    found = client.get("/api/v1/devices?q=DIGITS:7")  # any case; ids, profiles and models
    assert [d["device_id"] for d in found.json()] == ["cam-03"] and found.headers["X-Total-Count"] == "1"
    assert found.json()[0]["latency_p95_ms"] == 4.5
    assert client.get("/api/v1/devices/cam-04").json()["telemetry"] == {"latency": {"p95_ms": "fast"}}
    by_profile = client.get("/api/v1/devices?q=avx512&limit=2")
    assert by_profile.headers["X-Total-Count"] == "6" and len(by_profile.json()) == 2
    # LIKE wildcards are taken literally
    assert client.get("/api/v1/devices?q=%25").json() == []
    assert client.get("/api/v1/devices?q=cam_0").json() == []
    assert client.get("/api/v1/devices?limit=0").status_code == 400
    # A group pages the same way.
    assert (
        client.post(
            "/api/v1/groups", json={"name": "g", "devices": [f"cam-{i:02d}" for i in range(12)]}
        ).status_code
        == 201
    )
    r = client.get("/api/v1/devices?group=g&limit=3&offset=1&q=cam")
    assert r.headers["X-Total-Count"] == "12" and [d["device_id"] for d in r.json()] == [
        "cam-01",
        "cam-02",
        "cam-03",
    ]
    assert json.loads(r.text)[0]["latency_p95_ms"] is None


def test_at_1200_devices_what_the_dashboard_reads_stays_small(client: Any) -> None:
    from fleet_server.db import Device

    with client.app.state.fleet.sessions() as s:
        s.add_all(
            Device(
                device_id=f"dev-{i:05d}",
                profile="x86-64-avx2",
                target="onnx-x86",
                active="digits:6" if i % 3 == 0 else "digits:7",
                online=i % 2 == 0,
            )
            for i in range(1200)
        )
        s.commit()
    page = client.get("/api/v1/devices?limit=100&offset=1100")
    assert page.headers["X-Total-Count"] == "1200" and len(page.json()) == 100
    assert page.json()[-1]["device_id"] == "dev-01199"
    assert len(page.content) < 60_000
    summary = client.get("/api/v1/fleet/summary")
    assert summary.json()["models"] == [
        {"model": "digits:7", "devices": 800, "online": 400},
        {"model": "digits:6", "devices": 400, "online": 200},
    ]
    assert len(summary.content) < 1000
    # The event stream's first event carries aggregates only, however many devices there are.
    assert len(client.app.state.live.snapshot()) < 1000
    # edgectl pages through them all.
    from edgectl.client import FleetClient

    edge = FleetClient("http://testserver", transport=client._transport)
    edge.DEVICE_PAGE = 500
    ids = [d["device_id"] for d in edge.list_devices()]
    assert len(ids) == 1200 == len(set(ids)) and ids == sorted(ids)
