"""The guards on inbound MQTT payloads: size and nesting measured without parsing, and the
quarantine of refused digests (bounded, persisted, tolerant of a damaged file)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.inbound import (
    DESIRED_MAX_BYTES,
    MAX_DEPTH,
    InboundLimits,
    MessageRefused,
    Quarantine,
    digest,
    nesting_depth,
)


@pytest.mark.parametrize(
    ("payload", "depth"),
    [
        (b"", 0),
        (b'{"a": 1}', 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"s": "[[[[{{{{"}', 1),  # brackets inside a string don't count
        (b'{"s": "a \\" [[[["}', 1),  # nor after an escaped quote
        (b"]]]][[", 2),  # malformed, but never negative and never raising
    ],
)
def test_nesting_depth(payload: bytes, depth: int) -> None:
    assert nesting_depth(payload) == depth


def test_a_deep_payload_is_measured_fast_and_stops_at_the_bound() -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    start = time.perf_counter()
    assert nesting_depth(nested, stop_at=MAX_DEPTH + 1) == MAX_DEPTH + 1
    assert time.perf_counter() - start < 0.1
    assert nesting_depth(nested) == 100_000


def test_limits_refuse_too_large_too_deep_and_unknown_kinds() -> None:
    limits = InboundLimits()
    limits.check("desired", b"{" * MAX_DEPTH + b"}" * MAX_DEPTH)
    with pytest.raises(MessageRefused) as too_deep:
        limits.check("desired", b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert too_deep.value.reason == "too_deep"
    with pytest.raises(MessageRefused) as too_large:
        limits.check("desired", b" " * (DESIRED_MAX_BYTES + 1))
    assert too_large.value.reason == "too_large"
    with pytest.raises(MessageRefused) as unknown:
        limits.check("telemetry", b"{}")
    assert unknown.value.reason == "too_large"


def test_the_quarantine_is_bounded_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "quarantine.json"
    q = Quarantine(path, keep=3)
    for n in range(5):
        q.add(digest(str(n).encode()))
    again = Quarantine(path, keep=3)
    assert digest(b"4") in again and digest(b"2") in again
    assert digest(b"1") not in again  # the oldest were forgotten
    assert json.loads(path.read_text())["digests"] == [digest(str(n).encode()) for n in (2, 3, 4)]


def test_another_agent_version_starts_the_quarantine_afresh(tmp_path: Path) -> None:
    """A newer agent may take what an older one refused (a desired state of a newer schema)."""
    path = tmp_path / "quarantine.json"
    Quarantine(path, agent_version="1.0").add(digest(b"newer schema"))
    assert digest(b"newer schema") in Quarantine(path, agent_version="1.0")
    assert digest(b"newer schema") not in Quarantine(path, agent_version="1.1")


@pytest.mark.parametrize("content", [b"{not json", b'{"a": 1}', b"[1, 2]", b'{"digests": [1]}'])
def test_a_damaged_quarantine_file_starts_afresh(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "quarantine.json"
    path.write_bytes(content)
    q = Quarantine(path)
    assert digest(b"x") not in q
    q.add(digest(b"x"))
    assert digest(b"x") in Quarantine(path)


def test_the_log_throttle_lets_one_line_per_key_per_interval_and_counts_the_rest() -> None:
    from agent.inbound import LogThrottle

    now = [100.0]
    t = LogThrottle(interval=60.0, clock=lambda: now[0])
    assert t.admit("malformed") == 0
    assert [t.admit("malformed") for _ in range(5)] == [None] * 5
    assert t.admit("too_deep") == 0  # each key on its own
    now[0] += 59.9
    assert t.admit("malformed") is None
    now[0] += 0.2
    assert t.admit("malformed") == 6  # the next line says how many were held back
    assert t.admit("malformed") is None
