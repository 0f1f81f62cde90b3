"""Start fleet-server and edge-agent as real child processes on loopback, for the quickstart,
``edgectl simulate`` and the end-to-end tests.

Each process prints one JSON line ``{"event": "ready", ...}`` on stdout when it is up; its logs go
to a file under the run directory. :class:`Launched` waits for that line (or for the process to
die, in which case the error names the log file and quotes its tail).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class LaunchError(RuntimeError):
    """A child process did not come up. The message quotes the tail of its log."""


def _exe(name: str) -> list[str]:
    # Prefer the console script beside the running interpreter (the same venv), so a quickstart
    # run from .venv/bin/edgectl starts .venv's server and agents.
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return [str(local)]
    found = shutil.which(name)
    if found:
        return [found]
    module = {"fleet-server": "fleet_server.cli", "edge-agent": "agent.cli"}[name]
    return [sys.executable, "-m", module]


@dataclass
class Launched:
    """A child process started by :func:`launch`; ``ready`` holds its ready line."""

    name: str
    proc: subprocess.Popen[str]
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)
    _log: IO[str] | None = None

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        box: dict[str, Any] = {}

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if msg.get("event") == "ready":
                        box["ready"] = msg
                        break
            # keep draining so the child never blocks on a full pipe
            for _ in self.proc.stdout:
                pass

        t = threading.Thread(target=read, name=f"stdout-{self.name}", daemon=True)
        t.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready" in box:
                self.ready = box["ready"]
                return self.ready
            if self.proc.poll() is not None:
                raise LaunchError(f"{self.name} exited with code {self.proc.returncode}: {self.log_tail()}")
            time.sleep(0.05)
        raise LaunchError(f"{self.name} was not ready after {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        return f"log {self.log_path}:\n" + "\n".join(text[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL at once: a power cut, as far as the process can tell."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def launch(
    name: str,
    program: str,
    args: list[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Launched:
    """Start ``program`` (``fleet-server`` or ``edge-agent``) with ``args``; logs to
    ``log_dir/<name>.log``. ``command`` replaces the program's own executable (another
    environment's ``edge-agent``, or one run through ``chroot``). Call :meth:`Launched.wait_ready`
    next."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "a")  # noqa: SIM115 - closed in Launched.stop
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        [*(command or _exe(program)), *args],
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
        text=True,
        env=full_env,
        start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop children in order
    )
    return Launched(name=name, proc=proc, log_path=log_path, _log=log)


def throwaway_keys(directory: Path) -> Path:
    """TUF keys for a local fleet (``edgectl keys init`` in ``directory``, once, one root key):
    returns the server part. Throw-away: for a real fleet make keys with ``edgectl keys init``."""
    server = directory / "server"
    if not (server / "root.json").exists():
        from fleet_server.trust import init_keys

        init_keys(directory, root_keys=1, root_threshold=1)
    return server


def trust_root(server_keys: Path) -> Path:
    """The root metadata devices trust, in a server key directory."""
    return server_keys / "root.json"


def start_server(
    data_dir: Path,
    *,
    keys_dir: Path | None = None,
    broker: str = "auto",
    db: str | None = None,
    store: str | None = None,
    s3_endpoint: str | None = None,
    mqtt_protocol: str | None = None,
    extra: list[str] | None = None,
    timeout: float = 60.0,
) -> Launched:
    """Start ``fleet-server serve`` on a free loopback port and wait until it is ready.
    ``keys_dir``: the TUF server keys; throw-away ones beside ``data_dir`` when not given
    (:func:`throwaway_keys`, in ``<data_dir>-keys``)."""
    if keys_dir is None:
        keys_dir = throwaway_keys(data_dir.parent / f"{data_dir.name}-keys")
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir), "--broker", broker]
    args += ["--keys-dir", str(keys_dir)]
    if db:
        args += ["--db", db]
    if store:
        args += ["--store", store]
    if s3_endpoint:
        args += ["--s3-endpoint", s3_endpoint]
    if mqtt_protocol:
        args += ["--mqtt-protocol", mqtt_protocol]
    args += extra or []
    server = launch("fleet-server", "fleet-server", args, data_dir / "logs")
    server.wait_ready(timeout)
    return server


def start_agent(
    server_url: str,
    device_id: str,
    profile: str,
    data_dir: Path,
    *,
    labels: dict[str, str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 60.0,
    wait: bool = True,
    command: list[str] | None = None,
    extra: list[str] | None = None,
    tuf_root: Path | None = None,
    enroll_token: str | None = None,
) -> Launched:
    """Start ``edge-agent`` for one simulated device, serving on a free loopback port.
    ``command``: another ``edge-agent`` than this environment's (see :func:`launch`).
    ``enroll_token``: needed the first time (the device has no identity in ``data_dir`` yet); it
    goes through the environment, not the command line other users could read."""
    args = [
        "--server",
        server_url,
        "--device-id",
        device_id,
        "--profile",
        profile,
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]
    for k, v in (labels or {}).items():
        args += ["--label", f"{k}={v}"]
    if tuf_root is not None:
        args += ["--tuf-root", str(tuf_root)]
    args += extra or []
    env = {"EDGEFLEET_AGENT_ENROLL_TOKEN": enroll_token} if enroll_token else None
    agent = launch(device_id, "edge-agent", args, log_dir or data_dir / "logs", env=env, command=command)
    if wait:
        agent.wait_ready(timeout)
    return agent
