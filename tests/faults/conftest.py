"""The fault tier (``pytest -m faults``): a real agent process, a real Mosquitto and a real HTTP
artifact server (``tests/agent/agent_testkit.py``), with faults injected between and under them.

Every fault a test injects is recorded with its outcome (:func:`fault_log`); at the end of the
run the records are written to ``<pytest's base temp dir>/faults.json`` (or to
``$EDGEFLEET_FAULTS_JSON``) and summed up in the terminal summary, which RELIABILITY.md quotes.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.agent.agent_testkit import (
    BuiltBundle,
    desired_model,
    make_bundle,
    tar_bundle,
)
from tests.agent.conftest import SAMPLES, artifact_server, bundles, fleet, mqtt_settings, observer, spawn

# the agent tests' fixtures, reused here
__all__ = ["artifact_server", "bundles", "fleet", "mqtt_settings", "observer", "spawn"]

RECORDS: list[dict[str, Any]] = []
_OUT: list[Path] = []


@pytest.fixture(scope="session")
def fault_log(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., None]:
    """``fault_log(kind, point, **outcome)`` records one injected fault and what came of it."""
    _OUT[:] = [
        Path(os.environ.get("EDGEFLEET_FAULTS_JSON") or tmp_path_factory.getbasetemp() / "faults.json")
    ]

    def record(kind: str, point: str, **outcome: Any) -> None:
        RECORDS.append({"kind": kind, "point": point, **outcome})

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDS or not _OUT:
        return
    _OUT[0].write_text(json.dumps(RECORDS, indent=1, default=str) + "\n")
    kinds = Counter(r["kind"] for r in RECORDS)
    ok = Counter(r["kind"] for r in RECORDS if r.get("recovered"))
    terminalreporter.section("faults injected")
    for kind, n in sorted(kinds.items()):
        terminalreporter.write_line(f"{kind}: {n} injected, {ok[kind]} recovered")
    lost = sum(int(r.get("messages_lost", 0)) for r in RECORDS)
    terminalreporter.write_line(f"messages lost: {lost}; records: {_OUT[0]}")


@pytest.fixture(scope="session")
def slow_bundle(tmp_path_factory: pytest.TempPathFactory, bundles: dict[str, BuiltBundle]) -> BuiltBundle:
    """v2's model as version 3 with 1.5 MB of padding, to be downloaded slowly."""
    root = tmp_path_factory.mktemp("slow-bundle")
    d = make_bundle(root / "slow", bundles["2"].onnx, "linear", "3", SAMPLES, extra_bytes=1_500_000)
    tar = tar_bundle(d, root / "slow.tar")
    return BuiltBundle("linear", "3", d, tar, desired_model(tar, "linear", "3"), bundles["2"].onnx)


@pytest.fixture(scope="session")
def failing_bundle(tmp_path_factory: pytest.TempPathFactory, bundles: dict[str, BuiltBundle]) -> BuiltBundle:
    """Version 4: a good model whose self-test expects other outputs, so the update rolls back."""
    root = tmp_path_factory.mktemp("failing-bundle")
    wrong = {"logits": np.full((5, 3), 1e3, np.float32)}
    d = make_bundle(root / "bad", bundles["2"].onnx, "linear", "4", SAMPLES, expected=wrong)
    tar = tar_bundle(d, root / "bad.tar")
    return BuiltBundle("linear", "4", d, tar, desired_model(tar, "linear", "4"), bundles["2"].onnx)
