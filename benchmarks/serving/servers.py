"""The servers under test, each a real process on loopback, started for its rows and stopped after.

- The agent: ``python -m agent`` of this checkout. It serves a local bundle the way a device
  serves after a restart: the bundle is installed into slot ``a`` with the agent's own
  ``SlotStore`` and the journal says it is active (what a committed update leaves), so the agent
  restores and serves it at start-up with no fleet server or broker. ``--server`` names a closed
  loopback port; registration retries in the background and touches nothing on the serving path.
- KServe and MLServer: ``benchmarks/peers`` runs them with their own venvs' Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.serving.http_client import get_status

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "benchmarks" / "peers"
HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server did not come up; the message quotes its log's tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A started server: its HTTP port, gRPC address (or why there is none), and its process."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    http_port: int | None = None
    grpc_address: str | None = None
    grpc_missing: str | None = None
    facts: dict[str, object] = field(default_factory=dict)

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return f"log {self.log}:\n" + "\n".join(text[-lines:])

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM to its process group (it was started in a session of its own, so this reaches
        worker processes it spawned and nothing else), SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):  # children left in the group
            os.killpg(self.proc.pid, signal.SIGKILL)


def _spawn(
    name: str,
    cmd: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ready_line: bool = False,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``cmd`` in a session of its own, stderr to ``log``; stdout too, unless it prints a
    ready line (the agent, the delay proxy), which :func:`_read_ready_line` then reads."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE if name == "agent" or ready_line else fh,
            stderr=fh,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return proc, log


def _wait_http_ready(server: Server, model: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    assert server.http_port is not None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(f"{server.name} exited with {server.proc.returncode}: {server.tail()}")
        try:
            if get_status(HOST, server.http_port, f"/v2/models/{model}/ready") == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    server.stop()
    raise ServerError(f"{server.name}: model {model!r} not ready after {timeout:.0f}s: {server.tail()}")


# -- the agent ------------------------------------------------------------------------------


def agent_offers_grpc() -> bool:
    """Whether this checkout's agent takes ``--grpc-port`` (gRPC is being added)."""
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    return "--grpc-port" in out.stdout


def seed_agent_data(data_dir: Path, bundle_dir: Path, name: str, version: str) -> None:
    """Install ``bundle_dir`` into slot ``a`` and write a journal that has it active."""
    from agent.runtimes.bundle_dir import sha256_file
    from agent.update.journal import InstalledModel, Journal, JournalStore
    from agent.update.slots import SlotStore

    tar_path = data_dir.parent / f"{data_dir.name}-bundle.tar"
    data_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:  # as the fleet server tars one
        tar.add(bundle_dir / "manifest.json", "manifest.json")
        for p in sorted(bundle_dir.rglob("*")):
            if p.is_file() and p.name != "manifest.json":
                tar.add(p, p.relative_to(bundle_dir).as_posix())
    SlotStore(data_dir / "slots").install(tar_path, "a")
    active = InstalledModel(name=name, version=version, sha256=sha256_file(tar_path), slot="a")
    JournalStore(data_dir / "journal.json").save(Journal(generation=1, applied_generation=1, active=active))


_GRPC_IN_LOG = re.compile(r"grpc\S*.*?((?:127\.0\.0\.1|localhost|\[::1\]|0\.0\.0\.0|\[::\]):\d+)", re.I)


def _grpc_address(ready: dict[str, object], log: Path) -> str | None:
    """The agent's gRPC address from its ready line (any key naming grpc), else from its log."""
    for key, value in ready.items():
        if "grpc" in key.lower() and value:
            text = str(value).removeprefix("grpc://").removeprefix("http://").rstrip("/")
            return f"{HOST}:{text}" if text.isdigit() else text
    m = _GRPC_IN_LOG.search(log.read_text(errors="replace"))
    if m is None:
        return None
    return re.sub(r"^(0\.0\.0\.0|\[::\])", HOST, m.group(1))


def pinned(cmd: list[str], cpus: list[int] | None) -> list[str]:
    """``cmd`` run on ``cpus`` only (``taskset -c``); unchanged when ``cpus`` is ``None``.
    Raises :class:`ServerError` when pinning is asked for and ``taskset`` is missing."""
    if cpus is None:
        return cmd
    taskset = shutil.which("taskset")
    if taskset is None:
        raise ServerError("taskset is not installed (util-linux): cannot pin a server to its cores")
    return [taskset, "-c", ",".join(str(c) for c in cpus), *cmd]


def start_agent(
    bundle_dir: Path,
    name: str,
    version: str,
    threads: int | None,
    work: Path,
    grpc: bool,
    timeout: float = 90.0,
    *,
    tag: str | None = None,
    extra_args: list[str] | None = None,
    cpus: list[int] | None = None,
) -> Server:
    """The agent serving ``bundle_dir`` as ``name``; with ``grpc``, on a free gRPC port too.
    ``tag`` names its data directory, log and device id (default ``name``: two agents at once
    need two tags); ``extra_args`` are further agent flags; ``cpus`` pins it (see :func:`pinned`).
    Raises :class:`ServerError`."""
    tag = tag or name
    data = work / f"agent-{tag}"
    seed_agent_data(data, bundle_dir, name, version)
    cmd = [
        sys.executable, "-m", "agent",
        "--server", f"http://{HOST}:{free_port()}",  # nothing listens: no fleet in this benchmark
        "--device-id", f"bench-{tag}",
        "--profile", "x86-64-avx2",
        "--data-dir", str(data),
        "--host", HOST, "--port", "0",
        "--log-level", "INFO",
        "--standalone", "true",  # serves the seeded bundle; no enrollment or broker in this benchmark
    ]  # fmt: skip
    if threads is not None:  # None: the agent's own choice (up to a thread per CPU, fitted per model)
        cmd += ["--threads", str(threads)]
    if grpc:
        cmd += ["--grpc-port", "0"]
    cmd = pinned(cmd + list(extra_args or ()), cpus)
    proc, log = _spawn("agent", cmd, work / f"agent-{tag}.log", env={"PYTHONPATH": str(ROOT)}, cwd=ROOT)
    server = Server("agent", proc, log)
    ready = _read_ready_line(server, timeout)
    url = str(ready["inference_url"])
    server.http_port = int(url.rsplit(":", 1)[1].rstrip("/"))
    _wait_http_ready(server, name, timeout)
    if grpc:
        server.grpc_address = _grpc_address(ready, log)
        if server.grpc_address is None:
            server.grpc_missing = "the agent took --grpc-port but named no gRPC address (ready line or log)"
    else:
        server.grpc_missing = "this agent has no --grpc-port flag yet (gRPC not offered)"
    server.facts = {"ready_line": ready}
    return server


def _read_ready_line(server: Server, timeout: float) -> dict[str, object]:
    import threading

    assert server.proc.stdout is not None
    box: list[dict[str, object]] = []

    def read() -> None:
        assert server.proc.stdout is not None
        for raw in server.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("{"):
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("event") == "ready":
                    box.append(msg)
                    break
        for _ in server.proc.stdout:  # keep draining: a full pipe would block the agent
            pass

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if box:
            return box[0]
        if server.proc.poll() is not None:
            raise ServerError(f"{server.name} exited with {server.proc.returncode}: {server.tail()}")
        time.sleep(0.05)
    server.stop()
    raise ServerError(f"{server.name} printed no ready line in {timeout:.0f}s: {server.tail()}")


# -- the injected round trip ----------------------------------------------------------------


def start_delay_proxy(
    target_port: int, delay_ms: float, work: Path, tag: str, max_seconds: float, cpus: list[int] | None = None
) -> Server:
    """``benchmarks/delay_proxy.py`` forwarding a free loopback port to ``target_port`` with
    ``delay_ms`` each way; it exits by itself after ``max_seconds``. Raises :class:`ServerError`."""
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "delay_proxy.py"),
        "--target", f"{HOST}:{target_port}", "--delay-ms", str(delay_ms),
        "--max-seconds", str(max_seconds),
    ]  # fmt: skip
    proc, log = _spawn("proxy", pinned(cmd, cpus), work / f"proxy-{tag}.log", ready_line=True)
    server = Server(f"proxy-{tag}", proc, log)
    server.http_port = int(str(_read_ready_line(server, 30.0)["port"]))
    return server


# -- peers ----------------------------------------------------------------------------------


def start_kserve(
    python: Path, model: Path, name: str, ort_options: str, work: Path, timeout: float = 120.0
) -> Server:
    """KServe's model server (``peers/kserve_server.py``) on free loopback ports."""
    http, grpc_port = free_port(), free_port()
    cmd = [
        str(python), str(PEERS / "kserve_server.py"),
        "--model", str(model), "--name", name, "--host", HOST,
        "--http-port", str(http), "--grpc-port", str(grpc_port),
        "--ort-options", ort_options,
    ]  # fmt: skip
    proc, log = _spawn("kserve", cmd, work / f"kserve-{name}.log", cwd=work)
    server = Server("kserve", proc, log, http_port=http, grpc_address=f"{HOST}:{grpc_port}")
    _wait_http_ready(server, name, timeout)
    return server


def start_mlserver(
    python: Path, model: Path, name: str, ort_options: str, work: Path, timeout: float = 120.0
) -> Server:
    """``mlserver start`` with the custom runtime ``peers/mlserver_runtime.py`` on free loopback
    ports. MLServer's defaults otherwise (one parallel inference worker process, metrics on),
    except ``debug`` off, which turns its access log off as the agent and KServe rows have it."""
    repo = work / f"mlserver-{name}"
    (repo / name).mkdir(parents=True, exist_ok=True)
    http, grpc_port, metrics = free_port(), free_port(), free_port()
    settings = {
        "host": HOST,
        "http_port": http,
        "grpc_port": grpc_port,
        "metrics_port": metrics,
        "debug": False,
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": name,
        "implementation": "mlserver_runtime.OnnxModel",
        "parameters": {"uri": str(model), "extra": {"ort_options": json.loads(ort_options)}},
    }
    (repo / name / "model-settings.json").write_text(json.dumps(model_settings))
    cmd = [str(python.with_name("mlserver")), "start", str(repo)]
    proc, log = _spawn(
        "mlserver", cmd, work / f"mlserver-{name}.log", env={"PYTHONPATH": str(PEERS)}, cwd=repo
    )
    server = Server("mlserver", proc, log, http_port=http, grpc_address=f"{HOST}:{grpc_port}")
    _wait_http_ready(server, name, timeout)
    return server
