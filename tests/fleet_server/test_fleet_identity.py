"""Device identity against the real thing: a ``fleet-server`` process with the Mosquitto child it
configures itself (mTLS, ``use_identity_as_username``, ACL patterns on ``%u``, CRL), devices that
make their keys here and enroll over its REST API, and paho clients with their certificates.

Each refusal is shown with a check that the same path works for the right identity, so that a
broker which delivers nothing at all would not pass.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import identity
from agent.contracts import ReportedState, UpdateState
from agent.renewal import Renewer
from edgectl.local.launcher import Launched, start_agent, start_server
from tests.e2e.e2e_kit import edgectl
from tests.fixtures.enroll import enroll, enroll_as_device, enroll_token
from tests.fixtures.mosquitto import MOSQUITTO

TOPICS = "edgefleet/v1/devices"


@dataclass
class Server:
    proc: Launched
    dir: Path
    api: httpx.Client

    @property
    def url(self) -> str:
        return str(self.proc.ready["url"])

    @property
    def mqtt_port(self) -> int:
        return int(self.proc.ready["mqtt"]["port"])

    @property
    def tls_dir(self) -> Path:
        return self.dir / "mosquitto" / "tls"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not Path(MOSQUITTO).exists() and not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed")
    d = tmp_path_factory.mktemp("identity") / "server"
    proc = start_server(d, broker="mosquitto", extra=["--grpc-port", "-1"])
    assert proc.ready["mqtt"]["tls"] is True and proc.ready["device_api"].startswith("https://")
    api = httpx.Client(base_url=str(proc.ready["url"]), timeout=10)
    try:
        yield Server(proc, d, api)
    finally:
        api.close()
        proc.stop()


@dataclass
class Link:
    """A paho client with some identity: what it received, whether it is connected."""

    client: mqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    refused: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, pred: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {self.received[-5:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def link(port: int, client_id: str, ctx: ssl.SSLContext | None, subscribe: str | None = None) -> Link:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    out = Link(c)
    if ctx is not None:
        c.tls_set_context(ctx)

    def on_connect(cl: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            out.refused.set()
            return
        if subscribe:
            cl.subscribe(subscribe, qos=1)
        out.connected.set()

    def on_disconnect(*_a: Any) -> None:
        out.lost.set()
        out.connected.clear()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    c.on_message = lambda _c, _u, m: out.received.append((m.topic, bytes(m.payload)))
    c.reconnect_delay_set(1, 1)
    try:
        c.connect_async("127.0.0.1", port, keepalive=10)
    except OSError:
        out.refused.set()
    c.loop_start()
    return out


def device_ctx(data_dir: Path) -> ssl.SSLContext:
    return identity.tls_context(data_dir)


def server_ctx(s: Server) -> ssl.SSLContext:
    """The fleet server's own identity (CN fleet-server), as its bridge uses it."""
    ctx = ssl.create_default_context(cafile=str(s.tls_dir / "ca.crt"))
    ctx.load_cert_chain(str(s.tls_dir / "fleet-server.crt"), str(s.tls_dir / "fleet-server.key"))
    return ctx


def error_code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def test_enrolment_with_an_unknown_used_or_expired_token_is_refused(server: Server, tmp_path: Path) -> None:
    api = server.api
    body = {"device_id": "tok-1", "profile": "x86-64-avx2"}
    r = enroll(api, body, token="eft_not-a-token")
    assert r.status_code == 401 and error_code(r) == "enroll_token_unknown"

    once = enroll_token(api, uses=1)
    assert enroll(api, body, token=once).status_code == 200
    r = enroll(api, {**body, "device_id": "tok-2"}, token=once)
    assert r.status_code == 403 and error_code(r) == "enroll_token_used"
    assert api.get("/api/v1/devices/tok-2").status_code == 404  # nothing was made
    r = enroll(api, body, token=once)  # re-enrolment of an existing id needs a new token too
    assert r.status_code == 403 and error_code(r) == "enroll_token_used"

    short = enroll_token(api, uses=5, expires_in_s=0.5)
    time.sleep(1.0)
    r = enroll(api, {**body, "device_id": "tok-3"}, token=short)
    assert r.status_code == 403 and error_code(r) == "enroll_token_expired"
    assert api.get("/api/v1/devices/tok-3").status_code == 404

    r = enroll(api, {**body, "csr": "not a csr"}, token=enroll_token(api))
    assert r.status_code == 400 and "csr" in r.json()["error"]["message"]
    r = enroll(api, {**body, "device_id": "fleet-server"}, token=enroll_token(api))
    assert r.status_code == 400 and "reserved" in r.json()["error"]["message"]


def test_a_token_is_spent_exactly_as_often_as_it_allows_under_a_race(server: Server) -> None:
    token = enroll_token(server.api, uses=3)
    codes: list[int] = []

    def one(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            codes.append(
                enroll(c, {"device_id": f"race-{i}", "profile": "x86-64-avx2"}, token=token).status_code
            )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [200] * 3 + [403] * 5
    enrolled = [d for d in server.api.get("/api/v1/devices").json() if d["device_id"].startswith("race-")]
    assert len(enrolled) == 3


def test_a_device_publishing_on_another_devices_topic_is_not_delivered(
    server: Server, tmp_path: Path
) -> None:
    enroll_as_device(server.api, tmp_path / "a", "pub-a", enroll_token(server.api))
    enroll_as_device(server.api, tmp_path / "b", "pub-b", enroll_token(server.api))
    watcher = link(server.mqtt_port, "watcher", server_ctx(server), f"{TOPICS}/+/reported")
    a = link(server.mqtt_port, "pub-a", device_ctx(tmp_path / "a"))
    try:
        watcher.wait_for(lambda x: x.connected.is_set())
        a.wait_for(lambda x: x.connected.is_set())
        forged = ReportedState("pub-b", 0, UpdateState.COMMITTED, active="evil:666", seq=9)
        own = ReportedState("pub-a", 0, UpdateState.IDLE, seq=1)
        for who, rs in (("pub-b", forged), ("pub-a", own)):  # in order on one link
            a.client.publish(f"{TOPICS}/{who}/reported", rs.to_json(), qos=1)
        watcher.wait_for(lambda x: any(t.endswith("pub-a/reported") for t, _ in x.received))
        assert not [t for t, _ in watcher.received if "pub-b" in t]
        deadline = time.monotonic() + 10
        while server.api.get("/api/v1/devices/pub-a").json()["reported"] is None:
            assert time.monotonic() < deadline, "the server never recorded pub-a's own report"
            time.sleep(0.1)
        b = server.api.get("/api/v1/devices/pub-b").json()
        assert b["reported"] is None and b["active"] is None
    finally:
        a.stop()
        watcher.stop()


def test_desired_states_come_only_from_the_servers_identity(server: Server, tmp_path: Path) -> None:
    enroll_as_device(server.api, tmp_path / "a", "des-a", enroll_token(server.api))
    enroll_as_device(server.api, tmp_path / "b", "des-b", enroll_token(server.api))
    topic = f"{TOPICS}/des-b/desired"
    b = link(server.mqtt_port, "des-b", device_ctx(tmp_path / "b"), topic)
    a = link(server.mqtt_port, "des-a", device_ctx(tmp_path / "a"), f"{TOPICS}/#")
    # a client without a certificate, and one with a certificate from another CA
    plain = ssl.create_default_context(cafile=str(server.tls_dir / "ca.crt"))
    anonymous = link(server.mqtt_port, "anon", plain)
    from fleet_server.identity.ca import FleetCA, key_pem, new_key, read_csr

    other_ca = FleetCA.load_or_create(tmp_path / "other-ca")
    key = new_key()
    (tmp_path / "x.key").write_bytes(key_pem(key))
    (tmp_path / "x.crt").write_bytes(other_ca.issue_client(read_csr(csr_from(key)), "fleet-server", 1).pem)
    foreign_ctx = ssl.create_default_context(cafile=str(server.tls_dir / "ca.crt"))
    foreign_ctx.load_cert_chain(str(tmp_path / "x.crt"), str(tmp_path / "x.key"))
    foreign = link(server.mqtt_port, "foreign", foreign_ctx)
    real = link(server.mqtt_port, "real-server", server_ctx(server))
    try:
        for x in (a, b, real):
            x.wait_for(lambda y: y.connected.is_set())
        a.client.publish(topic, b'{"forged": "by des-a"}', qos=1, retain=True)
        a.client.publish(f"{TOPICS}/des-a/desired", b'{"forged": "own desired"}', qos=1, retain=True)
        time.sleep(1.0)
        for x in (anonymous, foreign):
            assert not x.connected.is_set()
        real.client.publish(topic, b'{"real": 1}', qos=1).wait_for_publish(5)
        b.wait_for(lambda y: y.received)
        assert b.received == [(topic, b'{"real": 1}')]
        assert not [t for t, _ in a.received if t.endswith("/desired")]  # not even its own, forged
    finally:
        real.client.publish(topic, b"", qos=1, retain=True)  # nothing retained for later tests
        for x in (a, b, anonymous, foreign, real):
            x.stop()


def csr_from(key: Any) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet-server")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_a_revoked_device_cannot_connect_download_or_renew(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "r"
    enrolled = enroll_as_device(server.api, data, "rev-1", enroll_token(server.api))
    first = link(server.mqtt_port, "rev-1", device_ctx(data))
    first.wait_for(lambda x: x.connected.is_set())
    dev_api = identity.device_http_client(data, base_url=str(enrolled.device_api))
    assert dev_api.get("/artifacts/none/1/x.tar").status_code == 404  # known device: only no such file
    try:
        r = server.api.post("/api/v1/devices/rev-1/revoke")
        assert r.status_code == 200 and r.json()["device"]["state"] == "REVOKED"
        first.wait_for(lambda x: x.lost.is_set())  # its open connection is dropped ...
        time.sleep(2.5)  # ... and paho's reconnects (every second) are refused
        assert not first.connected.is_set()
        again = link(server.mqtt_port, "rev-1", device_ctx(data))
        time.sleep(1.5)
        assert not again.connected.is_set()
        again.stop()
        r = dev_api.get("/artifacts/none/1/x.tar")
        assert r.status_code == 403 and error_code(r) == "certificate_revoked"
        r = dev_api.post("/api/v1/device/renew", json={"csr": identity.make_csr(data, "rev-1")})
        assert r.status_code == 403 and error_code(r) == "certificate_revoked"
        listed = edgectl(server.url, "devices", "ls", "-o", "json", timeout=60)
        assert listed.returncode == 0, listed.stderr
        (row,) = [d for d in json.loads(listed.stdout) if d["device_id"] == "rev-1"]
        assert row["state"] == "REVOKED" and row["revoked_at"] and not row["online"]
        shown = edgectl(server.url, "devices", "show", "rev-1", timeout=60)
        assert "REVOKED" in shown.stdout
        crl = (server.tls_dir / "crl.pem").read_bytes()
        from cryptography import x509

        serial = int(server.api.get("/api/v1/devices/rev-1").json()["certificate"]["serial"], 16)
        assert x509.load_pem_x509_crl(crl).get_revoked_certificate_by_serial_number(serial) is not None
    finally:
        first.stop()
        dev_api.close()
    # a new token enrolls it again, with a new key and certificate
    shutil.rmtree(data)
    enroll_as_device(server.api, data, "rev-1", enroll_token(server.api))
    back = link(server.mqtt_port, "rev-1", device_ctx(data))
    back.wait_for(lambda x: x.connected.is_set())
    back.stop()
    assert server.api.get("/api/v1/devices/rev-1").json()["state"] != "REVOKED"


def test_renewal_gives_a_new_certificate_without_a_token(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "n"
    enrolled = enroll_as_device(server.api, data, "ren-1", enroll_token(server.api))
    old = identity.certificate(data)
    ctx = device_ctx(data)
    not_yet = Renewer(data, "ren-1", str(enrolled.device_api), [ctx])
    assert not not_yet.renew_if_due()  # fresh: not due
    late = old.not_valid_after_utc - dt.timedelta(days=1)
    renewer = Renewer(data, "ren-1", str(enrolled.device_api), [ctx], clock=lambda: late)
    assert renewer.renew_if_due()
    new = identity.certificate(data)
    assert new.serial_number != old.serial_number and new.not_valid_after_utc >= old.not_valid_after_utc
    assert new.subject == old.subject
    shown = server.api.get("/api/v1/devices/ren-1").json()["certificate"]
    assert int(shown["serial"], 16) == new.serial_number
    renewed = link(server.mqtt_port, "ren-1", ctx)  # the reloaded context presents the new one
    renewed.wait_for(lambda x: x.connected.is_set())
    renewed.stop()


def test_the_device_key_never_leaves_the_device(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "k"
    enroll_as_device(server.api, data, "key-1", enroll_token(server.api))
    key_file = data / "identity" / "device.key"
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"
    pem_lines = [ln for ln in key_file.read_bytes().splitlines() if ln and not ln.startswith(b"-----")]
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    seen = 0
    for f in server.dir.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            seen += 1
            assert der not in blob and not any(line in blob for line in pem_lines), f
    assert seen > 5  # the database, the CA, the broker's files at least


def test_a_real_agent_enrolls_once_and_connects_over_mtls(server: Server, tmp_path: Path) -> None:
    token = enroll_token(server.api)
    data = tmp_path / "agent"
    agent = start_agent(server.url, "agent-1", "x86-64-avx2", data, enroll_token=token)
    try:
        wait_online(server, "agent-1")
        assert (data / "identity" / "device.crt").exists() and (data / "identity" / "device.key").exists()
    finally:
        agent.stop()
    wait_online(server, "agent-1", online=False)
    # restarted without a token: the identity it has is enough (the token has no uses left anyway)
    agent = start_agent(server.url, "agent-1", "x86-64-avx2", data)
    try:
        wait_online(server, "agent-1")
    finally:
        agent.stop()
    log = (data / "logs" / "agent-1.log").read_text()
    assert "enrolled with" in log and "Traceback" not in log
    bad = start_agent(
        server.url, "agent-2", "x86-64-avx2", tmp_path / "bad", enroll_token="eft_wrong", wait=False
    )
    assert bad.proc.wait(60) == 1
    assert "enroll_token_unknown" in (tmp_path / "bad" / "logs" / "agent-2.log").read_text()


def wait_online(server: Server, device_id: str, timeout: float = 30.0, online: bool = True) -> None:
    """Until the server's view (fed by the bridge's shared subscription) says ``online``."""
    deadline = time.monotonic() + timeout
    while True:
        r = server.api.get(f"/api/v1/devices/{device_id}")
        if r.status_code == 200 and r.json()["online"] is online:
            return
        assert time.monotonic() < deadline, f"{device_id} never became online={online}: {r.text[:300]}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_running_agent_renews_its_certificate_and_reconnects_with_it(tmp_path: Path) -> None:
    """Certificates of 20 s: the agent renews at 2/3 of that over mTLS (no token), and once the
    first one has expired, a dropped MQTT connection comes back with the renewed one."""
    if not Path(MOSQUITTO).exists() and not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed")
    d = tmp_path / "server"
    proc = start_server(d, broker="mosquitto", extra=["--grpc-port", "-1", "--cert-days", str(20 / 86400)])
    s = Server(proc, d, httpx.Client(base_url=str(proc.ready["url"]), timeout=10))
    data = tmp_path / "agent"
    token = enroll_token(s.api)
    agent = start_agent(
        s.url, "renew-1", "x86-64-avx2", data, enroll_token=token, extra=["--renew-check-s", "1"]
    )
    log = data / "logs" / "renew-1.log"
    try:
        wait_online(s, "renew-1")
        first = identity.certificate(data)
        deadline = time.monotonic() + 30
        while identity.certificate(data).serial_number == first.serial_number:
            assert time.monotonic() < deadline, "the agent did not renew its certificate"
            time.sleep(0.3)
        renewed = identity.certificate(data)
        assert (
            int(s.api.get("/api/v1/devices/renew-1").json()["certificate"]["serial"], 16)
            == renewed.serial_number
        )
        while dt.datetime.now(dt.UTC) < first.not_valid_after_utc + dt.timedelta(seconds=1):
            time.sleep(0.2)
        connects = log.read_text().count("MQTT connected")
        takeover = link(s.mqtt_port, "renew-1", server_ctx(s))  # the broker drops the agent's connection
        takeover.wait_for(lambda x: x.connected.is_set())
        takeover.stop()
        deadline = time.monotonic() + 20
        while log.read_text().count("MQTT connected") <= connects:  # back, with the renewed certificate
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        wait_online(s, "renew-1")
        assert "renewed the device certificate" in log.read_text()
    finally:
        agent.stop()
        s.api.close()
        proc.stop()
