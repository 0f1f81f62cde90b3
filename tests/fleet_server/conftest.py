"""Fixtures for the fleet server tests: settings in a temp dir, a started app (TestClient, lifespan
on), a paho client acting as a device, a ready bundle put in place without compiling, and a
polling helper. Test modules get everything through fixtures (no imports between test files)."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from agent.contracts import ReportedState, UpdateState, device_topic
from fleet_server.app import create_app
from fleet_server.bundle_tar import bundle_target_path, sha256_of, write_bundle_tar
from fleet_server.config import Settings
from fleet_server.db import Bundle
from fleet_server.fleet import Fleet
from tests.fixtures.tuf_keys import server_keys
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


@pytest.fixture
def wait() -> Callable[..., Any]:
    return wait_until


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a test server: temp data dir, free port, quick controller passes. Tests
    ``replace()`` the broker (and anything else) they need."""
    return Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "server",
        broker="embedded",
        mqtt_protocol="3.1.1",
        reconcile_interval_s=0.2,
        mqtt_client_id=f"fleet-server-test-{tmp_path.name}",
        keys_dir=server_keys(),
    )


@pytest.fixture
def start_app() -> Iterator[Callable[[Settings], TestClient]]:
    """``start_app(settings) -> TestClient`` with the lifespan running; stopped after the test."""
    stack: list[TestClient] = []

    def start(s: Settings) -> TestClient:
        client = TestClient(create_app(s))
        client.__enter__()
        stack.append(client)
        return client

    yield start
    for client in reversed(stack):
        client.__exit__(None, None, None)


def fleet_of(client: TestClient) -> Fleet:
    fleet: Fleet = client.app.state.fleet  # type: ignore[attr-defined]
    return fleet


@pytest.fixture
def fleet() -> Callable[[TestClient], Fleet]:
    return fleet_of


@pytest.fixture
def mosquitto_settings(settings: Settings, mosquitto_broker: Any) -> Settings:
    return settings.model_copy(update={"broker": mosquitto_broker.url, "mqtt_protocol": "5"})


class FakeDevice:
    """A paho client acting as a device: records the desired states it receives and publishes
    reported states, status and telemetry the way the agent does."""

    def __init__(self, device_id: str, host: str, port: int, protocol: str = "5") -> None:
        self.device_id = device_id
        self.desired: list[dict[str, Any]] = []
        self.retained: list[bool] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        v5 = protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"device-{device_id}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(10), "device could not connect"

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(device_topic(self.device_id, "desired"), qos=1)
        self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.desired.append(json.loads(msg.payload))
            self.retained.append(bool(msg.retain))

    def latest(self) -> dict[str, Any] | None:
        with self._lock:
            return self.desired[-1] if self.desired else None

    def report(
        self,
        generation: int,
        state: UpdateState,
        active: str | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        from agent.contracts import ReportedError

        rs = ReportedState(
            device_id=self.device_id,
            generation=generation,
            state=state,
            active=active,
            error=None if error is None else ReportedError(**error),
        )
        self.publish("reported", rs.to_json())

    def publish(self, kind: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(device_topic(self.device_id, kind), payload, qos=1, retain=retain)  # type: ignore[arg-type]
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def make_device() -> Iterator[Callable[..., FakeDevice]]:
    devices: list[FakeDevice] = []

    def make(device_id: str, host: str, port: int, protocol: str = "5") -> FakeDevice:
        d = FakeDevice(device_id, host, port, protocol)
        devices.append(d)
        return d

    yield make
    for d in devices:
        d.close()


def _seed_ready_bundles(
    client: TestClient, name: str = "digits", version: str = "1.0"
) -> dict[tuple[str, str], Any]:
    """Upload the digits model and put a READY bundle for every profile's build in place, as a
    finished compile would (a small tar with a manifest), so rollout tests need no compiler."""
    with open(DIGITS / "digits_cnn.onnx", "rb") as fh:
        r = client.post("/api/v1/models", data={"name": name, "version": version}, files={"file": fh})
    assert r.status_code == 201, r.text
    fl = fleet_of(client)
    from fleet_server.build_settings import build_key
    from fleet_server.catalog import get_model_version
    from fleet_server.queries import ensure_bundle

    out: dict[tuple[str, str], Any] = {}
    with fl.sessions() as s:
        mv = get_model_version(s, name, version)
        for prof in fl.profiles.values():
            key = build_key(prof)
            if (key.target, key.settings_key) in out:
                continue
            bundle = ensure_bundle(s, mv.id, key, prof.name)
            work = fl.settings.data_dir / "seed" / f"{key.target}-{key.settings_key}"
            (work / "bundle").mkdir(parents=True, exist_ok=True)
            manifest = {"schema": "edgefleet.manifest/1", "target": key.target, "precision": key.precision}
            (work / "bundle" / "manifest.json").write_text(json.dumps(manifest))
            (work / "bundle" / "model.bin").write_bytes(f"{name}:{version}:{key}".encode() * 100)
            tar = work / "bundle.tar"
            write_bundle_tar(work / "bundle", tar)
            sha = sha256_of(tar)
            path = bundle_target_path(name, version, key.target, key.precision, sha)
            fl.store.put_file(path, tar)
            bundle.status, bundle.target_path, bundle.sha256 = "ready", path, sha
            bundle.size, bundle.manifest = tar.stat().st_size, manifest
            out[(key.target, key.settings_key)] = {"target_path": path, "sha256": sha, "size": bundle.size}
        s.commit()
    return out


@pytest.fixture
def seed_bundles() -> Callable[..., dict[tuple[str, str], Any]]:
    return _seed_ready_bundles


@pytest.fixture
def bundle_rows() -> Callable[[TestClient], list[Bundle]]:
    def rows(client: TestClient) -> list[Bundle]:
        from sqlalchemy import select

        with fleet_of(client).read_sessions() as s:
            return list(s.scalars(select(Bundle)))

    return rows


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getnames()


@pytest.fixture
def tar_members() -> Callable[[bytes], list[str]]:
    return tar_names
