"""Request bodies of the Open Inference Protocol v2, built once per row before the clock starts,
and the decoding used to check one answer per row against in-process ONNX Runtime.

Every request carries an ``id``: KServe answers 500 to a JSON request without one.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32", "uint8": "UINT8"}
NUMPY = {v: k for k, v in DATATYPES.items()}


def json_body(input_name: str, x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A JSON-tensor request (``data`` flat) and its headers."""
    body = {
        "id": "1",
        "inputs": [
            {
                "name": input_name,
                "shape": list(x.shape),
                "datatype": DATATYPES[x.dtype.name],
                "data": x.ravel().tolist(),
            }
        ],
    }
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def binary_body(input_name: str, x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A binary-tensor-extension request, binary outputs asked for, and its headers."""
    raw = np.ascontiguousarray(x).tobytes()
    header = {
        "id": "1",
        "inputs": [
            {
                "name": input_name,
                "shape": list(x.shape),
                "datatype": DATATYPES[x.dtype.name],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    return head + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}


def decode_http(body: bytes, headers: dict[str, str]) -> dict[str, np.ndarray]:
    """The outputs of an HTTP answer, JSON or binary. Raises ``ValueError`` for one it can't read."""
    n = headers.get(HEADER_LENGTH.lower())
    head = json.loads(body if n is None else body[: int(n)])
    raw = b"" if n is None else body[int(n) :]
    out: dict[str, np.ndarray] = {}
    offset = 0
    for t in head["outputs"]:
        dtype = np.dtype(NUMPY[t["datatype"]])
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            arr = np.frombuffer(raw, dtype=dtype, count=int(size) // dtype.itemsize, offset=offset)
            offset += int(size)
        else:
            arr = np.asarray(t["data"], dtype=dtype)
        out[t["name"]] = arr.reshape(t["shape"])
    return out


def grpc_request(pb: Any, model: str, input_name: str, x: np.ndarray) -> Any:
    """A ``ModelInferRequest`` with the tensor's bytes in ``raw_input_contents`` (the agent,
    KServe and MLServer all read that form)."""
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=input_name, datatype=DATATYPES[x.dtype.name], shape=list(x.shape)
    )
    req = pb.ModelInferRequest(model_name=model, id="1")
    req.inputs.append(tensor)
    req.raw_input_contents.append(np.ascontiguousarray(x).tobytes())
    return req


def decode_grpc(resp: Any) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i, t in enumerate(resp.outputs):
        dtype = np.dtype(NUMPY[t.datatype])
        if len(resp.raw_output_contents) > i:
            arr = np.frombuffer(resp.raw_output_contents[i], dtype=dtype)
        else:
            arr = np.asarray(t.contents.fp32_contents, dtype=dtype)
        out[t.name] = arr.reshape(list(t.shape))
    return out
