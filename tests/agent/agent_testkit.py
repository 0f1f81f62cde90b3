"""Helpers for the agent tests: real bundles and a real HTTP artifact/enrollment server
(Mosquitto comes from ``tests.fixtures.mosquitto``). Nothing is faked: the agent talks to them
over sockets as it would in the field.

The artifact server is a TUF repository too (the fleet server's own
:class:`~fleet_server.trust.TufRepository` over a directory store, with keys of its own): every
bundle :meth:`ArtifactServer.add` serves is signed in as a target, metadata is served under
``/tuf/`` and targets at their consistent-snapshot names. :class:`AgentProcess` passes the
server's root (``--tuf-root``) to agents it starts against it."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from agent.contracts.manifest import FileEntry, Manifest, SelfTest, TensorSpec
from agent.contracts.state import DesiredModel, DesiredState
from agent.runtimes import sha256_file

TARGET = "onnx-x86"
PROFILE = "x86-64-avx2"


# -- models and bundles ----------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltBundle:
    """A bundle tar on disk and the desired-state entry that names it."""

    name: str
    version: str
    dir: Path
    tar: Path
    model: DesiredModel
    onnx: Path


def make_linear_onnx(path: Path, scale: float, n_in: int = 4, n_out: int = 3) -> Path:
    """An FP32 ONNX model ``logits = input @ W + b`` with W depending on ``scale``, so that two
    versions give visibly different outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((n_in, n_out)) * scale).astype(np.float32)
    b = (np.arange(n_out, dtype=np.float32) * scale).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["logits"]),
        ],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def ort_run(model: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed), strict=True))


def make_bundle(
    out: Path,
    onnx_path: Path,
    name: str,
    version: str,
    samples: dict[str, np.ndarray],
    *,
    target: str = TARGET,
    expected: dict[str, np.ndarray] | None = None,
    extra_bytes: int = 0,
) -> Path:
    """A hand-built FP32 bundle: model.onnx, selftest.npz (expected outputs from ONNX Runtime
    unless given) and a manifest written with :class:`Manifest`. ``extra_bytes`` adds a padding
    file (to make downloads take a while)."""
    import onnxruntime as ort

    out.mkdir(parents=True)
    shutil.copy(onnx_path, out / "model.onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ins = [
        TensorSpec(i.name, "float32", tuple(d if isinstance(d, int) else -1 for d in i.shape))
        for i in sess.get_inputs()
    ]
    outs = [
        TensorSpec(o.name, "float32", tuple(d if isinstance(d, int) else -1 for d in o.shape))
        for o in sess.get_outputs()
    ]
    expected = expected if expected is not None else ort_run(onnx_path, samples)
    arrays = {f"input:{k}": v for k, v in samples.items()} | {f"output:{k}": v for k, v in expected.items()}
    np.savez(out / "selftest.npz", **arrays)  # type: ignore[arg-type]
    roles = {"model.onnx": "model", "selftest.npz": "samples"}
    if extra_bytes:
        (out / "padding.bin").write_bytes(np.random.default_rng(1).bytes(extra_bytes))
        roles["padding.bin"] = "extra"
    files = tuple(
        FileEntry(p, sha256_file(out / p), (out / p).stat().st_size, role) for p, role in roles.items()
    )
    n = next(iter(samples.values())).shape[0]
    manifest = Manifest(
        target=target,
        precision="fp32",
        runtime="onnxruntime",
        runtime_version=ort.__version__,
        entrypoint="model.onnx",
        source_sha256=sha256_file(onnx_path),
        inputs=tuple(ins),
        outputs=tuple(outs),
        files=files,
        selftest=SelfTest(file="selftest.npz", samples=n, atol=1e-4, rtol=1e-4, check_top1=True),
        name=name,
        version=version,
    )
    (out / "manifest.json").write_text(manifest.to_json())
    return out


def tar_bundle(bundle_dir: Path, out: Path, extra_members: list[tarfile.TarInfo] | None = None) -> Path:
    """Tar a bundle as the fleet server does: entries at the root, manifest.json first."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(bundle_dir / "manifest.json", "manifest.json")
        for p in sorted(bundle_dir.rglob("*")):
            if p.is_file() and p.name != "manifest.json":
                tar.add(p, p.relative_to(bundle_dir).as_posix())
        for m in extra_members or []:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return out


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def desired_model(
    tar: Path,
    name: str,
    version: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    target: str = TARGET,
) -> DesiredModel:
    path = f"{name}/{version}/{target}-fp32-{sha256_file(tar)[:8]}.tar"
    return DesiredModel(
        name=name,
        version=version,
        target=target,
        precision="fp32",
        target_path=path,
        url=url if url is not None else f"/artifacts/{path}",
        size=size if size is not None else tar.stat().st_size,
        sha256=sha256 if sha256 is not None else sha256_file(tar),
    )


def desired_state(device_id: str, generation: int, *models: DesiredModel) -> DesiredState:
    return DesiredState(
        device_id=device_id, generation=generation, models=tuple(models), issued_at=time.time()
    )


# -- a real HTTP server: artifacts with Range, and registration -------------------------------


@dataclass
class ServerBehaviour:
    ignore_range: bool = False  # answer 200 with the whole file to a Range request
    throttle_s: float = 0.0  # sleep between chunks
    chunk: int = 64 << 10
    cut_after: int | None = None  # close the connection after this many body bytes ...
    cuts_left: int = 0  # ... this many times
    fail_status: int | None = None  # answer this status ...
    fails_left: int = 0  # ... this many times
    append_bytes: bytes = b""  # send these after the file (more than declared)
    mqtt: dict[str, Any] = field(default_factory=dict)
    register_status: int = 200  # the enrollment's answer status
    tuf_root: dict[str, Any] | None = None  # sent as the enrollment answer's tuf_root


class ArtifactServer:
    """Serves ``files`` (path under /artifacts/ → bytes) with Range support, redirects
    ``/redirect/<path>`` to ``/artifacts/<path>``, serves the TUF metadata of the bundles added
    (``/tuf/``; ``root_path`` is the root to trust), and answers device enrollment: the CSR is
    signed by a real fleet CA (:class:`~fleet_server.identity.ca.FleetCA`, in a temp dir), the
    broker is ``behaviour.mqtt`` (plain MQTT unless it says ``tls``), downloads stay on this
    server."""

    roots: dict[str, Path] = {}  # server URL -> its TUF root, for AgentProcess

    def __init__(self, port: int = 0) -> None:
        from fleet_server.identity.ca import FleetCA
        from fleet_server.store import DirStore
        from fleet_server.trust import TufRepository, init_keys, load_online_keys

        self._tmp = Path(tempfile.mkdtemp(prefix="artifact-server-"))
        init_keys(self._tmp / "keys")
        self.keys_dir = self._tmp / "keys"
        self.tuf_store = DirStore(self._tmp / "store")
        keys = load_online_keys(self.keys_dir / "server")
        self.tuf = TufRepository(self.tuf_store, keys, self._tmp / "work")
        self.tuf.open()
        self.root_path = self.keys_dir / "server" / "root.json"
        self.files: dict[str, bytes] = {}
        self.behaviour = ServerBehaviour()
        self.requests: list[dict[str, Any]] = []
        self.registrations: list[dict[str, Any]] = []  # every enrollment request's body
        self._ca_dir = tempfile.TemporaryDirectory(prefix="testkit-ca-")
        self.ca = FleetCA.load_or_create(Path(self._ca_dir.name))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/api/v1/devices/enroll":
                    return self._send(404, b'{"error": {"code": "not_found", "message": "no route"}}')
                outer.registrations.append(body)
                b = outer.behaviour
                if b.register_status != 200:
                    msg = {"error": {"code": "bad_profile", "message": "unknown profile"}}
                    return self._send(b.register_status, json.dumps(msg).encode())
                from fleet_server.identity.ca import read_csr

                issued = outer.ca.issue_client(read_csr(body["csr"]), body["device_id"], 30)
                answer = {
                    "device": {"device_id": body.get("device_id")},
                    "certificate": issued.pem.decode(),
                    "ca_certificate": outer.ca.cert_pem.decode(),
                    "mqtt": b.mqtt,
                    "device_api": None,
                    "tuf_root": b.tuf_root,
                    "server_time": time.time(),
                }
                self._send(200, json.dumps(answer).encode())

            def do_GET(self) -> None:
                b = outer.behaviour
                outer.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if self.path.startswith("/redirect/"):
                    self.send_response(307)
                    self.send_header("Location", "/artifacts/" + self.path.removeprefix("/redirect/"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.startswith("/tuf/"):
                    name = self.path.removeprefix("/tuf/")
                    if not outer.tuf_store.exists(f"tuf/{name}"):
                        return self._send(404, b"not found")
                    with outer.tuf_store.open(f"tuf/{name}") as fh:
                        return self._send(200, fh.read())
                if b.fails_left > 0 and b.fail_status:
                    b.fails_left -= 1
                    return self._send(b.fail_status, b"busy")
                path = self.path.removeprefix("/artifacts/")
                head, sep, base = path.rpartition("/")
                m = re.fullmatch(r"[0-9a-f]{64}\.(.+)", base)
                if m is not None and path not in outer.files:
                    path = f"{head}{sep}{m.group(1)}"  # the TUF consistent-snapshot name
                data = outer.files.get(path)
                if data is None:
                    return self._send(404, b"not found")
                start, status = 0, 200
                m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
                if m and not b.ignore_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:] + b.append_bytes
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                limit = len(body)
                if b.cut_after is not None and b.cuts_left > 0:
                    b.cuts_left -= 1
                    limit = min(limit, b.cut_after)
                sent = 0
                try:
                    while sent < limit:
                        piece = body[sent : min(limit, sent + b.chunk)]
                        self.wfile.write(piece)
                        self.wfile.flush()
                        sent += len(piece)
                        if b.throttle_s:
                            time.sleep(b.throttle_s)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if limit < len(body):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        ArtifactServer.roots[self.url] = self.root_path
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def add(self, model: DesiredModel, tar: Path, *, sign: bool = True) -> None:
        """Serve ``tar`` at ``model.target_path`` and (``sign``) sign it in as a TUF target with
        the fields the fleet server gives one."""
        self.files[model.target_path] = tar.read_bytes()
        if sign:
            self.sign(model.target_path, tar, model.name, model.version, model.target, model.precision)

    def sign(self, path: str, tar: Path, name: str, version: str, target: str, build_key: str) -> None:
        from fleet_server.trust.repository import new_target_from_tar
        from fleet_server.trust.service import bundle_custom

        custom = bundle_custom(name, version, target, build_key)
        self.tuf.add_targets([new_target_from_tar(path, tar, custom)])

    def start(self) -> ArtifactServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        ArtifactServer.roots.pop(self.url, None)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._ca_dir.cleanup()


# -- an in-process agent core: reconciler + registry, reports recorded ----------------------


class Recorder:
    """Collects reported states (thread-safe enough for list.append)."""

    def __init__(self) -> None:
        self.reports: list[Any] = []

    def __call__(self, state: Any) -> None:
        self.reports.append(state)

    def states(self, generation: int | None = None) -> list[str]:
        """The reported states, progress reports folded away (consecutive repeats dropped)."""
        out: list[str] = []
        for r in self.reports:
            if generation is not None and r.generation != generation:
                continue
            if not out or out[-1] != str(r.state):
                out.append(str(r.state))
        return out

    @property
    def last(self) -> Any:
        return self.reports[-1]


# -- an MQTT observer (the fleet server's side of the topics) --------------------------------


class Observer:
    """A paho client that records every message under ``edgefleet/v1/devices/#`` and publishes
    desired states, as the fleet server would."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"observer-{time.monotonic_ns()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *_: c.subscribe("edgefleet/v1/devices/#", qos=1)
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def payloads(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [json.loads(p) for t, p, _r in self.messages if t.endswith("/" + kind) and p]

    def reported_states(self, generation: int) -> list[str]:
        out: list[str] = []
        for r in self.payloads("reported"):
            if r["generation"] == generation and (not out or out[-1] != r["state"]):
                out.append(r["state"])
        return out

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> Any:
        """Wait until ``predicate(self)`` is truthy; return its value. Fails with what was seen."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(t, p[:200]) for t, p, _ in self.messages[-20:]]
                    raise AssertionError(f"timed out waiting; last messages: {seen}")
                self._cond.wait(min(left, 0.2))

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- the agent as a real process -------------------------------------------------------------


class AgentProcess:
    """``python -m agent`` with its stdout's ready line parsed and stderr kept in a file."""

    def __init__(
        self,
        data_dir: Path,
        server_url: str,
        device_id: str,
        *extra: str,
        module: str = "agent",
        env: dict[str, str] | None = None,
        enroll_token: str | None = "testkit-token",
    ) -> None:
        import os
        import subprocess
        import sys

        self.log = data_dir.parent / f"{data_dir.name}-agent-{time.monotonic_ns()}.log"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.log, "wb")  # noqa: SIM115 - closed in wait()/kill()
        cmd = [
            sys.executable,
            "-m",
            module,
            "--server",
            server_url,
            "--device-id",
            device_id,
            "--profile",
            PROFILE,
            "--data-dir",
            str(data_dir),
            "--log-level",
            "DEBUG",
            *extra,
        ]
        root = ArtifactServer.roots.get(server_url)
        if root is not None and "--tuf-root" not in extra:
            cmd += ["--tuf-root", str(root)]
        # -- device identity: the token (used while the device has no identity) goes by environment
        env = (env or {}) | ({"EDGEFLEET_AGENT_ENROLL_TOKEN": enroll_token} if enroll_token else {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, env=os.environ | env)
        self.ready: dict[str, Any] = {}

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        box: list[bytes] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            raise AssertionError(f"agent printed no ready line; its log:\n{self.log.read_text()[-4000:]}")
        self.ready = json.loads(box[0])
        return self.ready

    @property
    def url(self) -> str:
        return str(self.ready["inference_url"])

    def kill(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._stderr.close()

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout)
        self._stderr.close()
        return code


@contextlib.contextmanager
def committed_agent(root: Path, device_id: str, model: DesiredModel, tar: Path) -> Iterator[AgentProcess]:
    """A real Mosquitto, an artifact server holding ``tar`` and an agent that was sent ``model``
    as generation 1 and reported it COMMITTED (downloaded, verified, self-tested, serving); on
    leaving, the agent must still run, stop cleanly and have logged no traceback. Skips when
    Mosquitto is not installed."""
    import pytest

    from agent.contracts.topics import device_topic
    from tests.fixtures.mosquitto import MOSQUITTO, MosquittoBroker

    binary = MOSQUITTO if Path(MOSQUITTO).exists() else shutil.which("mosquitto")
    if not binary:
        pytest.skip("mosquitto is not installed")
    (root / "mosquitto").mkdir(parents=True)
    broker = MosquittoBroker(binary, root / "mosquitto")
    broker.start()
    fleet = ArtifactServer().start()
    fleet.behaviour.mqtt = {
        "host": broker.host,
        "port": broker.port,
        "protocol": "5",
        "topic_root": "edgefleet/v1",
        "keepalive": 5,
    }
    fleet.add(model, tar)
    observer = Observer(broker.host, broker.port)
    agent = AgentProcess(root / "data", fleet.url, device_id)
    try:
        agent.wait_ready()
        observer.publish(device_topic(device_id, "desired"), desired_state(device_id, 1, model).to_json())
        observer.wait_for(
            lambda o: [
                r for r in o.payloads("reported") if r["generation"] == 1 and r["state"] == "COMMITTED"
            ],
            timeout=60,
        )
        yield agent
        assert agent.proc.poll() is None, "the agent died"
        assert agent.terminate() == 0
        assert "Traceback" not in agent.log.read_text()
    finally:
        if agent.proc.poll() is None:
            agent.kill()
        observer.stop()
        fleet.stop()
        broker.stop()
