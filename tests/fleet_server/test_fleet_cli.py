"""``fleet-server`` as a process: the ready line on stdout (and nothing else there), logs on stderr,
port 0, clean shutdown on SIGTERM and SIGINT with the Mosquitto child stopped too; no model runtime
imported at start-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.tuf_keys import server_keys

pytestmark = pytest.mark.e2e


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}


def start(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    argv = [sys.executable, "-c", "from fleet_server.cli import run; run()", "--port", "0"]
    with open(tmp_path / "stderr.log", "w") as err:  # the child keeps its own copy of the fd
        proc = subprocess.Popen(
            [*argv, "--data-dir", str(tmp_path / "data"), "--keys-dir", str(server_keys()), *flags],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=clean_env(),
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        pytest.fail(f"no ready line; exit {proc.returncode}:\n{(tmp_path / 'stderr.log').read_text()}")
    return proc, json.loads(line)


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_prints_ready_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    proc, ready = start(tmp_path, "--broker", "mosquitto")
    try:
        assert ready["event"] == "ready"
        assert (
            ready["url"].startswith("http://127.0.0.1:") and ready["dashboard"] == ready["url"] + "/dashboard"
        )
        mqtt = ready["mqtt"]
        assert mqtt["host"] == "127.0.0.1" and mqtt["port"] not in (0, 1883) and mqtt["protocol"] == "5"
        assert httpx.get(ready["url"] + "/healthz").json() == {"status": "ok"}
        assert httpx.get(ready["dashboard"]).status_code == 200
        kids = children(proc.pid)
        assert kids, "the mosquitto child is running"
        proc.send_signal(sig)
        proc.wait(20)
        assert proc.stdout is not None and proc.stdout.read() == ""  # only the ready line on stdout
        deadline = time.monotonic() + 5
        while any(alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(k) for k in kids), "broker child left running"
        log = (tmp_path / "stderr.log").read_text()
        assert "Application shutdown complete" in log
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_settings_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from fleet_server.cli import run; run()", "--mqtt-protocol", "4",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "--mqtt-protocol" in done.stderr and done.stdout == ""


def test_start_up_imports_no_model_runtime(tmp_path: Path) -> None:
    code = f"""
import sys
from pathlib import Path
from fastapi.testclient import TestClient
from fleet_server.app import create_app
from fleet_server.config import Settings
s = Settings(port=0, data_dir=Path({str(tmp_path)!r}), broker="embedded", mqtt_protocol="3.1.1",
             keys_dir=Path({str(server_keys())!r}))
with TestClient(create_app(s)) as c:
    assert c.get("/healthz").status_code == 200
heavy = [m for m in ("onnxruntime", "tensorflow", "onnx", "compilers.pipeline", "torch") if m in sys.modules]
print(heavy)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
