"""A small Open Inference Protocol v2 client over JSON, enough for the quickstart's request.

(Applications should use an existing client such as ``tritonclient``; the tests do.)
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

DATATYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
    "float64": "FP64",
}
NUMPY = {v: k for k, v in DATATYPES.items()}


def infer(
    base_url: str,
    model: str,
    inputs: dict[str, np.ndarray],
    timeout: float = 30.0,
    client: httpx.Client | None = None,
) -> dict[str, np.ndarray]:
    """POST ``/v2/models/{model}/infer`` with JSON tensors; returns the outputs as arrays. Pass a
    ``client`` to reuse its connection (a one-off call also pays for the connection and setting
    up the HTTP client, tens of milliseconds, which are no part of the answer's time).

    Raises ``httpx.HTTPError`` for transport errors and ``RuntimeError`` with the server's message
    for an error answer.
    """
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": n,
                "shape": list(a.shape),
                "datatype": DATATYPES[str(a.dtype)],
                "data": a.ravel().tolist(),
            }
            for n, a in inputs.items()
        ]
    }
    url = f"{base_url.rstrip('/')}/v2/models/{model}/infer"
    r = (client or httpx).post(url, json=body, timeout=timeout)
    if r.status_code != 200:
        raise RuntimeError(f"inference at {base_url} answered {r.status_code}: {r.text[:300]}")
    out = {}
    for t in r.json()["outputs"]:
        out[t["name"]] = np.asarray(t["data"], dtype=NUMPY.get(t["datatype"], "float32")).reshape(t["shape"])
    return out
