"""``GET /api/v1/events`` on a real fleet-server process, read with httpx streaming: events
arrive as the fleet and deployments change, heartbeats on a quiet stream, the token checked in
the header or ``?token=``, the bound on streams per client, a stream freed when its client goes,
and open streams ended at once when the server stops."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgectl.local.launcher import Launched, start_server
from tests.fixtures.enroll import enroll, enroll_token
from tests.polling import wait_until

pytestmark = [pytest.mark.slow]  # real fleet-server processes

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "ev-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PER_CLIENT = 8  # FeedLimits.max_streams_per_client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Launched]:
    srv = start_server(
        tmp_path / "server",
        broker="embedded",
        mqtt_protocol="3.1.1",
        extra=["--token", TOKEN, "--events-heartbeat-s", "0.5"],
    )
    yield srv
    srv.stop()


def url_of(srv: Launched) -> str:
    return str(srv.ready["url"])


class Events:
    """The events of one open stream, as ``(name, data)``."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> tuple[str, Any]:
        name, data = "message", None
        for line in self._lines:
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and data is not None:
                return name, data
        raise EOFError("the stream ended")

    def until(self, match: Any, limit: int = 50) -> tuple[str, Any]:
        seen = []
        for _ in range(limit):
            name, data = self.next()
            if match(name, data):
                return name, data
            seen.append(name)
        raise AssertionError(f"no matching event in {seen}")


def test_events_arrive_as_the_fleet_and_deployments_change(server: Launched) -> None:
    url = url_of(server)
    with httpx.stream("GET", f"{url}/api/v1/events?token={TOKEN}", timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-store"
        ev = Events(r)
        name, snap = ev.next()
        assert name == "snapshot" and snap["deployments"] == [] and snap["fleet"]["devices"] == 0
        # A quiet stream still sends heartbeats.
        assert ev.until(lambda n, _d: n == "heartbeat")[1]["streams"] == 1

        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as admin:
            body = {"device_id": "cam-1", "profile": "x86-64-avx2", "labels": {"site": "ev"}}
            assert enroll(admin, body, token=enroll_token(admin, group="ev")).status_code == 200
        _, fleet = ev.until(lambda n, d: n == "fleet" and d["devices"] == 1)
        assert fleet["models"] == [{"model": None, "devices": 1, "online": 0}]
        assert fleet["profiles"] == [{"profile": "x86-64-avx2", "devices": 1, "online": 0}]

        with open(ROOT / "examples" / "digits" / "digits_cnn.onnx", "rb") as fh:
            r2 = httpx.post(
                f"{url}/api/v1/models",
                data={"name": "digits", "version": "1"},
                files={"file": fh},
                headers=AUTH,
            )
        assert r2.status_code == 201, r2.text
        body = {"model": "digits:1", "group": "ev", "rollout": {"waves": [{"count": 1}, {"percent": 100}]}}
        created = httpx.post(f"{url}/api/v1/deployments", json=body, headers=AUTH).json()
        _, dep = ev.until(lambda n, d: n == "deployment" and d["id"] == created["id"])
        assert dep["model"] == "digits:1" and dep["group"] == "ev"
        spec = dep["rollout"]["spec"]
        assert spec["waves"] == ["1", "100%"]
        assert spec["max_failure_rate"] == 0.0 and spec["gates"]["min_requests"] == 20  # defaults too
        # It moves on (compiling, then waiting for its device); every move is an event, no repeats.
        _, moved = ev.until(lambda n, d: n == "deployment" and d["state"] != dep["state"])
        assert moved["id"] == created["id"]

        # An operator action shows up on the stream too.
        assert httpx.post(f"{url}/api/v1/deployments/{created['id']}/pause", headers=AUTH).status_code == 200
        ev.until(lambda n, d: n == "deployment" and d["state"] == "PAUSED")


def test_the_stream_needs_a_viewer_token_in_the_header_or_the_query(server: Launched) -> None:
    url = url_of(server)
    assert httpx.get(f"{url}/api/v1/events", timeout=5).status_code == 401
    r = httpx.get(f"{url}/api/v1/events?token=wrong", timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    # The header wins over the query.
    r = httpx.get(f"{url}/api/v1/events?token={TOKEN}", headers={"Authorization": "Bearer wrong"}, timeout=5)
    assert r.status_code == 401
    made = httpx.post(f"{url}/api/v1/tokens", json={"name": "wall", "role": "viewer"}, headers=AUTH)
    assert made.status_code == 201, made.text
    viewer = made.json()["token"]
    for kwargs in ({"params": {"token": viewer}}, {"headers": {"Authorization": f"Bearer {viewer}"}}):
        with httpx.stream("GET", f"{url}/api/v1/events", timeout=10, **kwargs) as r:
            assert r.status_code == 200
            assert Events(r).next()[0] == "snapshot"
    # ?token= is for the event stream only.
    assert httpx.get(f"{url}/api/v1/devices?token={viewer}", timeout=5).status_code == 401


def test_streams_are_bounded_per_client_freed_on_disconnect_and_ended_on_stop(server: Launched) -> None:
    url = url_of(server)
    client = httpx.Client(timeout=10, headers=AUTH)
    opened = []
    try:
        for _ in range(PER_CLIENT):
            r = client.send(client.build_request("GET", f"{url}/api/v1/events"), stream=True)
            assert r.status_code == 200
            opened.append(r)
        over = client.get(f"{url}/api/v1/events")
        assert over.status_code == 429 and over.headers["retry-after"]
        assert over.json()["error"]["code"] == "busy" and "close one" in over.json()["error"]["message"]
        # A client that goes away frees its stream.
        opened.pop().close()

        def reopened() -> httpx.Response | None:
            r = client.send(client.build_request("GET", f"{url}/api/v1/events"), stream=True)
            if r.status_code == 200:
                return r
            r.close()
            return None

        opened.append(wait_until(reopened, timeout=10, what="a stream after one closed", interval=0.2))
        # Stopping the server ends every open stream at once (not after the graceful timeout).
        reader = Events(opened[0])
        assert reader.next()[0] == "snapshot"
        started = time.monotonic()
        server.stop()
        with pytest.raises((EOFError, httpx.RemoteProtocolError, httpx.ReadError)):
            while True:
                reader.next()
        assert time.monotonic() - started < 4
    finally:
        for r in opened:
            r.close()
        client.close()
