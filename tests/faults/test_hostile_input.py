"""Hostile input against a real agent process, from fixed-seed generators (the same cases every
run; ``EDGEFLEET_FUZZ_SEED`` draws others):

- desired states that are valid JSON but break the contract's bounds and types, on the desired
  topic (the payload-level poisons, too large, too deep, not JSON, are in
  ``tests/agent/test_mqtt_poison.py``; the server's topics in
  ``tests/fleet_server/test_fleet_bridge_poison.py``);
- the inference endpoints: HTTP JSON, HTTP with the binary-tensor extension and lying header
  lengths, and gRPC with malformed protobuf sent as raw bytes.

No crash, no 5xx (503 only when overloaded), gRPC never UNKNOWN/INTERNAL, the agent's peak memory
stays bounded (``VmHWM`` in ``/proc/PID/status``), and it answers a good request afterwards.
"""

from __future__ import annotations

import json
import os
import random
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.contracts.topics import device_topic
from tests.agent.agent_testkit import AgentProcess, ArtifactServer, BuiltBundle, Observer, desired_state
from tests.faults.faultkit import X, random_json, serves_complete, wait_terminal

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.e2e]
DEVICE = "edge-hostile-1"
DESIRED = device_topic(DEVICE, "desired")
SEED = int(os.environ.get("EDGEFLEET_FUZZ_SEED", "20261201"))
PEAK_MEMORY_BOUND = 200 << 20  # bytes the agent's peak RSS may grow over the whole fuzz run


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of ``pid`` in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


@pytest.fixture
def agent(
    tmp_path: Path,
    fleet: ArtifactServer,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    spawn: Callable[..., AgentProcess],
) -> Iterator[AgentProcess]:
    a = spawn(tmp_path / "data", fleet.url, DEVICE, "--grpc-port", "0")
    a.wait_ready()
    observer.publish(DESIRED, desired_state(DEVICE, 1, bundles["1"].model).to_json())
    assert wait_terminal(observer, 1)["state"] == "COMMITTED"
    yield a
    assert a.proc.poll() is None, "the agent died"
    assert a.terminate() == 0
    # The only tracebacks: the DEBUG record a refused MQTT message gets (--log-level DEBUG).
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d )", a.log.read_text())
    crashes = [r for r in records if "Traceback" in r and "refused message's error" not in r.split("\n")[0]]
    assert not crashes, crashes[:3]


def test_contract_breaking_desired_states_are_refused_and_the_next_good_one_applies(
    agent: AgentProcess,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    fault_log: Callable[..., None],
) -> None:
    good = json.loads(desired_state(DEVICE, 2, bundles["2"].model).to_json())
    model = good["models"][0]
    hostile: list[Any] = [
        good | {"generation": 2**63},  # would strand the device: every real generation is smaller
        good | {"generation": 2**31},
        good | {"generation": -1},
        good | {"generation": 1.5},
        good | {"generation": True},
        good | {"generation": "2"},
        good | {"models": [model | {"size": 2**70}]},
        good | {"models": [model | {"size": -1}]},
        good | {"models": [model | {"sha256": "../../etc/passwd"}]},
        good | {"models": [model, model]},
        good | {"models": {"a": 1}},
        good | {"models": [None]},
        good | {"serving": {"max_batch_size": "x" * 1000}},
        good | {"device_id": "other-device"},
        good | {"schema": "edgefleet.desired/999"},
        good | {"device_id": "é" * 10_000},
        [good],
        "a string",
        None,
    ]
    for payload in hostile:
        observer.publish(DESIRED, json.dumps(payload).encode())
    observer.publish(DESIRED, json.dumps(good).encode())
    done = wait_terminal(observer, 2)
    assert done["state"] == "COMMITTED" and serves_complete(agent.url, bundles) == "2"
    counts = observer.wait_for(lambda o: [r["refused"] for r in o.payloads("reported") if r.get("refused")])[
        -1
    ]
    # Every one refused as malformed, except the two naming another device id: those parse and
    # the plan ignores them (it reports where it stands instead).
    assert counts == {"malformed": len(hostile) - 2}, counts
    fault_log("hostile-desired", "contract-breaking desired states", cases=len(hostile),
              refused=counts, recovered=True)  # fmt: skip


def json_cases(rng: random.Random, n: int) -> Iterator[bytes]:
    base = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    text = json.dumps(base).encode()
    yield b"[" * 50_000 + b"]" * 50_000
    yield json.dumps(
        {"inputs": [{"name": "input", "shape": [2**40, 4], "datatype": "FP32", "data": [1.0]}]}
    ).encode()
    yield json.dumps(
        {"inputs": [{"name": "input", "shape": [-1, 4], "datatype": "FP32", "data": []}]}
    ).encode()
    yield (
        b'{"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ['
        + b"1e999," * 7
        + b"1]}]}"
    )
    for _ in range(n):
        pick = rng.randrange(5)
        if pick == 0:
            yield json.dumps(random_json(rng)).encode()
        elif pick == 1:
            body = json.loads(text)
            field = rng.choice(["name", "shape", "datatype", "data"])
            body["inputs"][0][field] = random_json(rng)
            yield json.dumps(body).encode()
        elif pick == 2:
            yield text[: rng.randrange(len(text))]
        elif pick == 3:
            raw = bytearray(text)
            for _ in range(rng.randrange(1, 8)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            yield bytes(raw)
        else:
            yield rng.randbytes(rng.randrange(1, 4096))


def binary_cases(rng: random.Random, n: int) -> Iterator[tuple[bytes, str]]:
    """(body, Inference-Header-Content-Length) pairs, mostly lying about one or the other."""
    for _ in range(n):
        size = rng.choice([0, 1, 31, 32, 33, 2**31, 2**63, -8])
        header = json.dumps({"inputs": [{"name": "input", "shape": rng.choice([[2, 4], [2**20, 4], [0, 4]]),
                                         "datatype": rng.choice(["FP32", "INT8", "BYTES", "X"]),
                                         "parameters": {"binary_data_size": size}}]}).encode()  # fmt: skip
        tensor = struct.pack("<8f", *X.ravel()) if rng.random() < 0.5 else rng.randbytes(rng.randrange(64))
        body = header + tensor
        length = rng.choice(
            [
                str(len(header)),
                str(len(header) + rng.randrange(-20, 20)),
                "-1",
                "abc",
                str(2**70),
                "",
                str(len(body) + 1),
            ]
        )
        yield body, length


def grpc_cases(rng: random.Random, n: int) -> Iterator[bytes]:
    from agent.serving.grpc import oip_v2_pb2 as pb

    good = pb.ModelInferRequest(model_name="linear")
    t = good.inputs.add(name="input", datatype="FP32", shape=[2, 4])
    del t
    good.raw_input_contents.append(struct.pack("<8f", *X.ravel()))
    valid = good.SerializeToString()
    for _ in range(n):
        pick = rng.randrange(5)
        if pick == 0:
            yield rng.randbytes(rng.randrange(0, 2048))
        elif pick == 1:
            yield valid[: rng.randrange(len(valid))]
        elif pick == 2:
            raw = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            yield bytes(raw)
        else:
            req = pb.ModelInferRequest()
            req.CopyFrom(good)
            req.inputs[0].shape[:] = rng.choice([[2**40, 4], [-1, 4], [0], [2, 4, 1, 1], [2**31, 2**31]])
            if pick == 4:
                req.raw_input_contents[0] = rng.randbytes(rng.randrange(64))
            req.inputs[0].datatype = rng.choice(["FP32", "FP64", "BYTES", "BOOL", "??"])
            yield req.SerializeToString()


def test_fuzzed_inference_requests_get_4xx_and_memory_stays_bounded(
    agent: AgentProcess, bundles: dict[str, BuiltBundle], fault_log: Callable[..., None]
) -> None:
    import grpc

    rng = random.Random(SEED)
    before = memory(agent.proc.pid)
    statuses: dict[str, int] = {}
    bad: list[tuple[str, Any, bytes]] = []
    url = f"{agent.url}/v2/models/linear/infer"
    with httpx.Client(timeout=15) as http:
        for body in json_cases(rng, 300):
            r = http.post(url, content=body, headers={"content-type": "application/json"})
            statuses[f"json {r.status_code}"] = statuses.get(f"json {r.status_code}", 0) + 1
            if r.status_code >= 500 and r.status_code != 503:
                bad.append(("json", r.status_code, body[:200]))
        for body, length in binary_cases(rng, 200):
            headers = {"content-type": "application/octet-stream", "Inference-Header-Content-Length": length}
            r = http.post(url, content=body, headers=headers)
            statuses[f"binary {r.status_code}"] = statuses.get(f"binary {r.status_code}", 0) + 1
            if r.status_code >= 500 and r.status_code != 503:
                bad.append(("binary", r.status_code, body[:200]))
        # The whole body bound: 20 MB of JSON digits is refused, not parsed.
        huge = (
            b'{"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ['
            + b"1.0," * 5_000_000
        )
        r = http.post(url, content=huge + b"1]}]}", headers={"content-type": "application/json"})
        assert r.status_code == 413, r.status_code
    with grpc.insecure_channel(str(agent.ready["grpc_address"])) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        for raw in grpc_cases(rng, 300):
            try:
                infer(raw, timeout=15)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            statuses[f"grpc {code}"] = statuses.get(f"grpc {code}", 0) + 1
            if code in ("UNKNOWN", "INTERNAL", "DATA_LOSS", "DEADLINE_EXCEEDED"):
                bad.append(("grpc", code, raw[:200]))
    after = memory(agent.proc.pid)
    assert not bad, bad[:5]
    assert agent.proc.poll() is None
    assert serves_complete(agent.url, bundles) == "1"
    growth = after["VmHWM"] - before["VmRSS"]
    assert growth < PEAK_MEMORY_BOUND, (before, after)
    cases = sum(statuses.values()) + 1
    fault_log("fuzz", f"inference endpoints (seed {SEED})", cases=cases, statuses=statuses,
              rss_before=before["VmRSS"], peak_after=after["VmHWM"], rss_after=after["VmRSS"],
              server_errors=len(bad), recovered=True)  # fmt: skip
