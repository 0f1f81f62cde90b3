"""The README's main command, as a script runs it: `edgectl quickstart --devices 3 --exit-when-done`
starts a broker, the fleet server and three agents (x86 and ARM), rolls the example out, gets
answers from every device, and stops everything again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.e2e_kit import edgectl, ok

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_quickstart_rolls_out_and_every_device_answers(tflite_toolchain: None, tmp_path: Path) -> None:
    run_dir = tmp_path / "qs"
    res = ok(
        edgectl(
            "http://127.0.0.1:9",
            "-o",
            "json",
            "quickstart",
            "--devices",
            "3",
            "--exit-when-done",
            "--dir",
            str(run_dir),
            timeout=900,
        )
    )
    summary = json.loads(res.stdout)
    assert summary["ok"] is True and summary["deployment"]["state"] == "SUCCEEDED"
    devices = summary["devices"]
    assert [d["profile"] for d in devices] == ["x86-64-avx2", "raspberry-pi-5", "x86-64-avx512-vnni"]
    for d in devices:
        assert d["correct"] >= len(d["labels"]) - 1 and len(d["predicted"]) == len(d["labels"]) == 8
    assert "dashboard" in res.stderr and summary["dashboard"].endswith("/dashboard")
    # Everything it started is stopped: no process still holds the run directory's logs open.
    lsof = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(run_dir) not in lsof


def test_quickstart_refuses_an_unknown_profile_before_starting_anything(tmp_path: Path) -> None:
    res = edgectl(
        "http://127.0.0.1:9",
        "quickstart",
        "--profile",
        "toaster-9000",
        "--exit-when-done",
        "--dir",
        str(tmp_path / "qs"),
    )
    assert res.returncode != 0
    assert "toaster-9000" in res.stderr and "x86-64-avx2" in res.stderr
    assert not (tmp_path / "qs").exists()


def test_quickstart_keeps_the_fleet_up_until_ctrl_c(tmp_path: Path) -> None:
    import os
    import signal
    import sys
    import time

    run_dir = tmp_path / "qs"
    exe = Path(sys.executable).with_name("edgectl")
    proc = subprocess.Popen(
        [str(exe), "quickstart", "--devices", "1", "--profile", "x86-64-avx2", "--dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        assert proc.stderr is not None
        seen = []
        deadline = time.monotonic() + 300
        for line in proc.stderr:
            seen.append(line)
            if "press Ctrl-C" in line or time.monotonic() > deadline:
                break
        assert any("press Ctrl-C" in line for line in seen), "".join(seen)[-3000:]
        time.sleep(1)
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(run_dir) not in ps  # the server, its broker and the agent are gone too
