"""Checks the fault tests share: what the agent serves, what it reported, what its journal says."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.agent.agent_testkit import BuiltBundle, Observer, ort_run

X = np.random.default_rng(11).standard_normal((2, 4)).astype(np.float32)
TERMINAL = ("COMMITTED", "IDLE")


def infer(url: str, timeout: float = 10.0) -> tuple[str, np.ndarray]:
    """(model version, logits) from the agent's HTTP inference API; fails on anything but 200."""
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    r = httpx.post(f"{url}/v2/models/linear/infer", json=body, timeout=timeout)
    assert r.status_code == 200, r.text
    return r.json()["model_version"], np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 3)


def serves_complete(url: str, bundles: dict[str, BuiltBundle]) -> str:
    """The version served, after checking its answer is the complete model's (ONNX Runtime on the
    bundle's source model gives the same logits), so no partial file is being served."""
    version, y = infer(url)
    assert version in bundles, f"serving unknown version {version}"
    np.testing.assert_allclose(y, ort_run(bundles[version].onnx, {"input": X})["logits"], rtol=1e-5)
    return version


def reported(o: Observer, gen: int, *states: str) -> list[dict[str, Any]]:
    return [
        r for r in o.payloads("reported") if r["generation"] == gen and (not states or r["state"] in states)
    ]


def wait_terminal(o: Observer, gen: int, timeout: float = 60.0) -> dict[str, Any]:
    """The first report of ``gen`` in a terminal state (COMMITTED, or IDLE after a failure)."""
    return dict(o.wait_for(lambda ob: reported(ob, gen, *TERMINAL), timeout=timeout)[-1])


def journal(data: Path) -> dict[str, Any]:
    return dict(json.loads((data / "journal.json").read_text()))


def assert_report_matches_journal(report: dict[str, Any], data: Path) -> None:
    j = journal(data)
    assert report["state"] == j["state"] and report["generation"] == j["generation"]
    assert report["seq"] == j["writes"]
    active = j["active"] and f"{j['active']['name']}:{j['active']['version']}"
    assert report["active"] == active
    assert (report["error"] or {}).get("code") == (j["error"] or {}).get("code")


def stale_temps(data: Path) -> list[str]:
    return sorted(p.name for p in data.rglob("*.tmp"))


def wait_file(path: Path, size: int, timeout: float = 30.0) -> int:
    """Wait until ``path`` holds at least ``size`` bytes; returns its size."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (n := path.stat().st_size) >= size:
            return n
        time.sleep(0.005)
    raise AssertionError(f"{path} never reached {size} bytes")
