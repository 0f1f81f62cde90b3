"""Seeded fuzzing of what the fleet server reads off the device topics (reported, status,
telemetry): the same reading steps as ``fleet_server.mqtt_bridge.FleetBridge.handle`` (bounded
JSON, the contract, the stored-field bounds), over mutated good messages and random JSON. Every
payload must be taken or refused with the server's own errors (``RejectedMessage``,
``ContractError``); anything else would be counted as a handler ``error``, a bug. What is taken
must be storable: within the column bounds and the stored-text bounds. The bridge's behaviour
on a live broker with fixed poisons is in ``tests/fleet_server/test_fleet_bridge_poison.py``."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from typing import Any

import pytest

from agent.contracts.errors import ContractError
from agent.contracts.state import ReportedError, ReportedState, Status, UpdateState
from fleet_server.inbound import RejectedMessage, bound_reported, check_status, read_json
from fleet_server.limits import DB_INT_MAX, FIELD_LIMITS, JSON_INT_MAX, MESSAGE_LIMITS
from tests.faults.faultkit import random_json

pytestmark = [pytest.mark.faults, pytest.mark.slow]
SEED = int(os.environ.get("EDGEFLEET_FUZZ_SEED", "20261201"))
CASES = 2000  # per topic kind


def good(kind: str) -> dict[str, Any]:
    if kind == "reported":
        rs = ReportedState("d1", 3, UpdateState.COMMITTED, active="m:1", seq=9, progress={"bytes": 1},
                           error=ReportedError("LOAD_FAILED", "x"), refused={"malformed": 2})  # fmt: skip
        return dict(json.loads(rs.to_json()))
    if kind == "status":
        return dict(json.loads(Status("d1", online=True, connection=4).to_json()))
    return {"window_s": 60, "requests": 10, "latency_ms": {"p50": 1.0, "p99": 2.0}}


def mutate(rng: random.Random, msg: Any) -> Any:
    if isinstance(msg, dict) and msg and rng.random() < 0.8:
        key = rng.choice(sorted(msg))
        out = dict(msg)
        out[key] = mutate(rng, msg[key]) if rng.random() < 0.3 else random_json(rng)
        return out
    return random_json(rng)


def payloads(rng: random.Random, kind: str) -> list[bytes]:
    base = good(kind)
    text = json.dumps(base).encode()
    out = [b"[" * 40 + b"]" * 40, b"x" * (MESSAGE_LIMITS.max_bytes(kind) + 1), b"NaN", b'{"a": Infinity}']
    for _ in range(CASES):
        pick = rng.randrange(4)
        if pick == 0:
            out.append(json.dumps(mutate(rng, base)).encode())
        elif pick == 1:
            out.append(text[: rng.randrange(len(text))])
        elif pick == 2:
            raw = bytearray(text)
            for _ in range(rng.randrange(1, 5)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            out.append(bytes(raw))
        else:
            msg = dict(base)
            field = rng.choice(["generation", "seq", "connection", "active", "error", "refused", "progress"])
            msg[field] = rng.choice(
                [2**31, 2**53, 2**63, -1, "é" * 70_000, {"code": "C" * 500, "message": "m" * 60_000},
                 {f"r{i}": i for i in range(40)}, {"bytes": 2**60}, [1] * 10]
            )  # fmt: skip
            out.append(json.dumps(msg).encode())
    return out


def read(kind: str, payload: bytes) -> Any:
    """What the bridge stores for ``payload`` on a ``kind`` topic (its reading steps)."""
    data = read_json(payload, kind, MESSAGE_LIMITS)
    if kind == "reported":
        return bound_reported(ReportedState.from_dict(data, "reported"), FIELD_LIMITS)
    if kind == "status":
        return check_status(Status.from_dict(data, "status"))
    if not isinstance(data, dict):
        raise ContractError("telemetry: expected an object")
    return data


@pytest.mark.parametrize("kind", ["reported", "status", "telemetry"])
def test_every_fuzzed_device_message_is_taken_within_bounds_or_refused(
    kind: str, fault_log: Callable[..., None]
) -> None:
    rng = random.Random(f"{SEED}-{kind}")
    outcomes: dict[str, int] = {}
    for payload in payloads(rng, kind):
        try:
            value = read(kind, payload)
        except RejectedMessage as exc:
            outcome = f"rejected {exc.reason}"
        except ContractError:
            outcome = "rejected contract"
        else:
            outcome = "taken"
            if isinstance(value, ReportedState):
                assert 0 <= value.generation <= DB_INT_MAX and 0 <= (value.seq or 0) <= JSON_INT_MAX
                assert value.error is None or len(value.error.message) <= FIELD_LIMITS.error_message_chars
                assert all(0 <= v <= JSON_INT_MAX for v in (value.refused or {}).values())
            elif isinstance(value, Status):
                assert value.connection is None or 0 <= value.connection <= DB_INT_MAX
            else:
                assert len(json.dumps(value)) <= 2 * MESSAGE_LIMITS.telemetry_bytes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("taken", 0) > 0 and len(outcomes) > 2, outcomes  # the fuzz reached both sides
    fault_log("fuzz", f"server {kind} topic (seed {SEED})", cases=sum(outcomes.values()),
              statuses=outcomes, server_errors=0, recovered=True)  # fmt: skip
