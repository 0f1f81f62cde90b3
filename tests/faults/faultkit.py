"""Checks the fault tests share: what the agent serves, what it reported, what its journal says."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from agent.contracts.state import DesiredModel
from tests.agent.agent_testkit import ArtifactServer, BuiltBundle, Observer, ort_run

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


def part_file(data: Path, sha256: str) -> Path:
    """The part file of the download of bundle ``sha256``: ``<sha256>.part`` anywhere under the
    data directory's ``downloads`` (the downloader's layout is its own business)."""
    found = sorted((data / "downloads").rglob(f"{sha256}.part"))
    return found[0] if found else data / "downloads" / f"{sha256}.part"


def wait_part(data: Path, sha256: str, size: int, timeout: float = 30.0) -> Path:
    """Wait until the part file of ``sha256`` holds at least ``size`` bytes; returns its path."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = part_file(data, sha256)
        if path.exists() and path.stat().st_size >= size:
            return path
        time.sleep(0.005)
    raise AssertionError(f"no part file of {sha256} under {data} reached {size} bytes")


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value with the awkward cases over-represented (huge and negative numbers,
    extreme floats, escapes and NUL in strings), nesting at most five deep."""
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**31, 2**63, 2**200, rng.randrange(-(10**6), 10**6)])
    if kind == 2:
        return rng.choice([0.5, -1e308, 1e308, 1e-320])
    if kind in (3, 4):
        return "".join(rng.choice('abcFP32INT8[]{}"\\é\x00') for _ in range(rng.randrange(12)))
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["name", "shape", "datatype", "data", "parameters", "x"]): random_json(rng, depth + 1)
            for _ in range(rng.randrange(4))}  # fmt: skip


def requests_for(server: ArtifactServer, model: DesiredModel, since: int = 0) -> list[dict[str, Any]]:
    """The server's requests for ``model``'s bundle (by its file name, which a TUF repository
    prefixes with the hash in its consistent-snapshot path)."""
    name = model.target_path.rsplit("/", 1)[-1]
    return [r for r in server.requests[since:] if r["path"].endswith(name)]
