"""Helpers for the end-to-end tests: run the real CLI, query the fleet server, build model
variants. Everything talks to real processes over loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


def edgectl(server: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the installed ``edgectl`` (the one beside this interpreter) against ``server``."""
    exe = Path(sys.executable).with_name("edgectl")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgectl.main"]
    env = {**os.environ, "EDGEFLEET_SERVER": server, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env)


def ok(res: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert res.returncode == 0, (
        f"exit {res.returncode}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"
    )
    return res


def api(server: str, path: str) -> Any:
    r = httpx.get(f"{server}{path}", timeout=10)
    r.raise_for_status()
    return r.json()


# -- device identity: devices enroll with a token (the unauthenticated registration is gone) --

ENROLL_GROUP = "enrolled"  # the group the e2e devices enroll into (deployments select by label)


def enroll_token(server: str, group: str = ENROLL_GROUP) -> str:
    """A one-use enrollment token for ``group`` (made first if missing)."""
    with httpx.Client(base_url=server, timeout=10) as c:
        if c.get(f"/api/v1/groups/{group}").status_code == 404:
            c.post("/api/v1/groups", json={"name": group}).raise_for_status()
        r = c.post("/api/v1/devices/enroll-tokens", json={"group": group, "uses": 1})
        r.raise_for_status()
        return str(r.json()["token"])


def variant(src: Path, dest: Path, factor: float) -> Path:
    """A new model version with different bytes and the same predictions: the last layer's
    weights and bias scaled by a positive ``factor`` (arg-max is scale-invariant)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    last = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    names = set(last.input[1:])
    for init in model.graph.initializer:
        if init.name in names:
            init.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name)
            )
    onnx.save(model, str(dest))
    return dest


def fp32_top1(x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(DIGITS / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    return np.argmax(sess.run(None, {"input": x})[0], axis=1)


def triton_top1(inference_url: str, model: str, x: np.ndarray, binary: bool = True) -> tuple[np.ndarray, str]:
    """Top-1 of ``x`` from a device, through tritonclient (a client we did not write), and the
    model version the device's metadata reports."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=inference_url.removeprefix("http://"))
    try:
        meta = client.get_model_metadata(model)
        preds = []
        for start in range(0, len(x), 64):
            batch = x[start : start + 64]
            inp = triton.InferInput("input", list(batch.shape), "FP32")
            inp.set_data_from_numpy(batch, binary_data=binary)
            out = triton.InferRequestedOutput("logits", binary_data=binary)
            res = client.infer(model, [inp], outputs=[out])
            preds.append(np.argmax(res.as_numpy("logits"), axis=1))
        version = meta.get("versions", [""])[-1] if isinstance(meta, dict) else ""
        return np.concatenate(preds), str(version)
    finally:
        client.close()
