"""The deploy loop end to end, every part a real process: `edgectl` → fleet-server → Mosquitto →
three edge-agents (two x86, one ARM profile) that download, verify, install, self-test and serve.

Checked with a client we did not write (tritonclient): each device answers the held-out digits
with the FP32 model's top-1; a second version replaces the first; a bundle corrupted in the
artifact store is refused (HASH_MISMATCH) and the previous version keeps serving. The same flow
runs on SQLite + a directory store and on PostgreSQL + S3 (moto's server over HTTP).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.e2e_kit import DIGITS, api, edgectl, fp32_top1, ok, triton_top1, variant
from tests.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

DEVICES = {"x86-a": "x86-64-avx2", "x86-b": "x86-64-avx512-vnni", "arm-a": "raspberry-pi-5"}
LABELS = {"fleet": "e2e"}
MIN_AGREEMENT = 0.99


def push(url: str, model: Path, version: str) -> None:
    ok(
        edgectl(
            url,
            "models",
            "push",
            str(model),
            "--name",
            "digits",
            "--version",
            version,
            "--calibration",
            str(DIGITS / "calibration.npz"),
            "--validation",
            str(DIGITS / "heldout.npz"),
        )
    )


def deploy(url: str, version: str) -> tuple[int, dict[str, Any]]:
    res = edgectl(
        url,
        "-o",
        "json",
        "deploy",
        f"digits:{version}",
        "--group",
        "cams",
        "--wait",
        "--timeout",
        "600",
        "--interval",
        "0.5",
    )
    try:
        return res.returncode, json.loads(res.stdout)
    except ValueError:
        raise AssertionError(
            f"deploy printed no JSON (exit {res.returncode}): {res.stderr[-3000:]}"
        ) from None


def check_serving(fleet: Any, version: str, x: np.ndarray, ref: np.ndarray) -> None:
    for device_id in DEVICES:
        for binary in (True, False):
            pred, served = triton_top1(fleet.inference_url(device_id), "digits", x, binary=binary)
            agreement = float((pred == ref).mean())
            assert served == version, f"{device_id} serves version {served}, expected {version}"
            assert agreement >= MIN_AGREEMENT, f"{device_id}: top-1 agreement with FP32 {agreement:.4f}"


def check_telemetry(url: str, model: str, requests: int) -> None:
    """The agents' telemetry (published every 5 s) reached the server: the group's summary counts
    the requests just made, with latency and predicted classes."""

    def counted() -> dict[str, Any] | None:
        f = api(url, f"/api/v1/telemetry/summary?model={model}&group=cams")["figures"]
        return f if f["requests"] >= requests and f["devices"] == len(DEVICES) else None

    f = wait_until(counted, timeout=30, what=f"telemetry of {model} from every device", interval=0.5)
    assert f["error_rate"] == 0.0 and f["p95_ms"] and f["p95_ms"] > 0, f
    assert sum(f["class_counts"].values()) > 0 and all(k.isdigit() for k in f["class_counts"]), f


def corrupt(fleet: Any, backend: Any, target_path: str) -> None:
    """Flip bytes of a stored bundle tar in place (same size): bit rot in the artifact store."""
    if backend.bucket:
        import boto3

        s3 = boto3.client("s3", endpoint_url=backend.s3_endpoint, region_name="us-east-1")
        key = f"{backend.prefix}/{target_path}"
        data = bytearray(s3.get_object(Bucket=backend.bucket, Key=key)["Body"].read())
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
        s3.put_object(Bucket=backend.bucket, Key=key, Body=bytes(data))
        return
    path = fleet.root / "server" / "artifacts" / target_path
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))


def test_deploy_update_and_refuse_a_broken_bundle(
    make_fleet: Any, backend: Any, tflite_toolchain: None, tmp_path: Path
) -> None:
    fleet = make_fleet(backend)
    for device_id, profile in DEVICES.items():
        fleet.add_agent(device_id, profile, LABELS)
    url = fleet.url
    held = np.load(DIGITS / "heldout.npz")
    x = held["x"]
    ref = fp32_top1(x)
    try:
        push(url, DIGITS / "digits_cnn.onnx", "1")
        ok(edgectl(url, "groups", "create", "cams", "--selector", "fleet=e2e"))

        # v1 reaches every device, which then answers like FP32.
        code, dep = deploy(url, "1")
        assert code == 0 and dep["state"] == "SUCCEEDED", dep
        assert {d["device_id"]: d["state"] for d in dep["devices"]} == dict.fromkeys(DEVICES, "HEALTHY")
        assert {c["target"] for c in dep["compile"]} == {"onnx-x86", "tflite-arm"}
        check_serving(fleet, "1", x, ref)
        check_telemetry(url, "digits:1", requests=2 * len(DEVICES))

        # v2 replaces v1.
        push(url, variant(DIGITS / "digits_cnn.onnx", tmp_path / "v2.onnx", 1.5), "2")
        code, dep = deploy(url, "2")
        assert code == 0 and dep["state"] == "SUCCEEDED", dep
        check_serving(fleet, "2", x, ref)
        for device_id in DEVICES:
            device = api(url, f"/api/v1/devices/{device_id}")
            assert device["active"] == "digits:2" and device["reported"]["previous"] == "digits:1"

        # v3 is compiled ahead, then its stored bundles are corrupted: every device refuses them.
        push(url, variant(DIGITS / "digits_cnn.onnx", tmp_path / "v3.onnx", 2.0), "3")
        ok(
            edgectl(
                url,
                "models",
                "compile",
                "digits:3",
                "--wait",
                *[a for p in sorted(set(DEVICES.values())) for a in ("--profile", p)],
            )
        )
        bundles = api(url, "/api/v1/models/digits/3")["bundles"]
        assert {b["status"] for b in bundles} == {"ready"}
        for b in bundles:
            corrupt(fleet, backend, b["target_path"])
        code, dep = deploy(url, "3")
        # The first refusal halts the rollout (no failure is allowed by default) and every device
        # it touched is told digits:2 again; those that refused v3 themselves stay FAILED.
        assert code == 1 and dep["state"] == "ROLLED_BACK", dep
        assert "gate failed in wave 1 of 1" in dep["error"], dep["error"]
        for d in dep["devices"]:
            assert d["state"] in ("FAILED", "ROLLED_BACK"), d
            if d["state"] == "FAILED":
                assert d["error"]["code"] == "HASH_MISMATCH", d
        assert any(d["state"] == "FAILED" for d in dep["devices"])
        check_serving(fleet, "2", x, ref)
    except BaseException:
        print(fleet.logs())
        raise


def test_broker_restart_during_a_deployment(make_fleet: Any, mosquitto_broker: Any) -> None:
    """Mosquitto restarts right after the rollout starts, and again a moment later: every device
    still ends HEALTHY, and the server has every device's final reported state."""
    fleet = make_fleet()
    devices = {"x86-1": "x86-64-avx2", "x86-2": "x86-64-avx512-vnni", "x86-3": "x86-64-avx2"}
    for device_id, profile in devices.items():
        fleet.add_agent(device_id, profile, LABELS)
    url = fleet.url
    try:
        push(url, DIGITS / "digits_cnn.onnx", "1")
        ok(edgectl(url, "models", "compile", "digits:1", "--wait", "--profile", "x86-64-avx2"))
        ok(edgectl(url, "groups", "create", "cams", "--selector", "fleet=e2e"))
        dep = json.loads(ok(edgectl(url, "-o", "json", "deploy", "digits:1", "--group", "cams")).stdout)
        mosquitto_broker.restart()
        mosquitto_broker.restart()
        final = wait_until(
            lambda: (
                (d := api(url, f"/api/v1/deployments/{dep['id']}"))["state"] in ("SUCCEEDED", "FAILED") and d
            ),
            timeout=120,
            what="the deployment to settle after broker restarts",
            interval=0.5,
        )
        assert final["state"] == "SUCCEEDED", final
        for device_id in devices:
            device = api(url, f"/api/v1/devices/{device_id}")
            assert device["reported"]["state"] == "COMMITTED", device
            assert device["reported_generation"] == device["desired_generation"], device
            assert device["active"] == "digits:1", device
            # Online status is eventually consistent: each agent says so again on reconnect.
            path = f"/api/v1/devices/{device_id}"
            wait_until(lambda path=path: api(url, path)["online"], 30, f"{device_id} online", interval=0.5)
    except BaseException:
        print(fleet.logs())
        raise
