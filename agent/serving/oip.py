"""Open Inference Protocol v2 over HTTP: request decoding and response encoding (pure).

Supports JSON tensors (``data`` flat or nested) and the binary tensor data extension that
``tritonclient.http`` uses by default: a request whose ``Inference-Header-Content-Length`` header
says how many leading bytes are the JSON header, followed by the raw bytes of every input whose
``parameters.binary_data_size`` is set, in order; and a response built the same way for every
output asked for with ``parameters.binary_data`` (or all of them, with the request parameter
``binary_data_output``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.serving.errors import BadRequest
from agent.serving.json_tensors import load_request

HEADER_LENGTH = "Inference-Header-Content-Length"

# OIP datatype ↔ numpy dtype name. BYTES (strings) is not offered: every model here takes numbers.
DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
_TO_OIP = {v: k for k, v in DATATYPES.items()}
_DTYPE_TO_OIP = {np.dtype(v): k for k, v in DATATYPES.items()}  # dtype.name costs microseconds


def oip_datatype(dtype: str | np.dtype[Any]) -> str:
    """The OIP datatype of a numpy dtype (name). Raises ``ValueError`` for one OIP lacks."""
    known = _DTYPE_TO_OIP.get(dtype) if isinstance(dtype, np.dtype) else None
    if known is not None:
        return known
    name = np.dtype(dtype).name
    if name not in _TO_OIP:
        raise ValueError(f"dtype {name} has no Open Inference Protocol datatype")
    return _TO_OIP[name]


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: tuple[RequestedOutput, ...] | None = None  # None: all outputs
    binary_output: bool = False  # the default for outputs not listed explicitly
    parameters: dict[str, Any] = field(default_factory=dict)


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse an inference request body. Raises :class:`BadRequest` naming the faulty tensor."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise BadRequest(f"{HEADER_LENGTH} is {header_length}, the body has {len(body)} bytes")
        head, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        head, binary = body, memoryview(b"")
    req = load_request(head)
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list):
        raise BadRequest("request must be an object with an 'inputs' list")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")

    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, t in enumerate(req["inputs"]):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise BadRequest(f"inputs[{i}] must be an object with a 'name'")
        name = t["name"]
        if name in inputs:
            raise BadRequest(f"input {name!r} is given twice")
        array, used = _decode_tensor(name, t, binary[offset:])
        offset += used
        inputs[name] = array
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data are not claimed by any input")

    outputs = None
    if req.get("outputs") is not None:
        if not isinstance(req["outputs"], list):
            raise BadRequest("'outputs' must be a list")
        outs = []
        for i, o in enumerate(req["outputs"]):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise BadRequest(f"outputs[{i}] must be an object with a 'name'")
            oparams = _object(o.get("parameters"), f"outputs[{i}].parameters")
            outs.append(
                RequestedOutput(
                    o["name"], bool(oparams.get("binary_data", params.get("binary_data_output", False)))
                )
            )
        outputs = tuple(outs)
    rid = req.get("id")
    return InferRequest(
        inputs=inputs,
        id=None if rid is None else str(rid),
        outputs=outputs,
        binary_output=bool(params.get("binary_data_output", False)),
        parameters=params,
    )


def _object(value: Any, what: str) -> dict[str, Any]:
    """``value`` when it is an object, ``{}`` when it is missing; else :class:`BadRequest`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be an object")
    return value


def _decode_tensor(name: str, t: dict[str, Any], binary: memoryview) -> tuple[np.ndarray, int]:
    datatype = t.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:  # a list or object is unhashable
        raise BadRequest(
            f"input {name!r}: datatype {datatype!r} is not supported (use one of {', '.join(DATATYPES)})"
        )
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of non-negative integers")
    dtype = np.dtype(DATATYPES[datatype])
    count = math.prod(shape)
    size = _object(t.get("parameters"), f"input {name!r}: 'parameters'").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise BadRequest(
                f"input {name!r}: binary_data_size {size!r} exceeds the {len(binary)} bytes left"
            )
        if size != count * dtype.itemsize:
            need = count * dtype.itemsize
            raise BadRequest(f"input {name!r}: {size} bytes of binary data; {datatype} {shape} needs {need}")
        return np.frombuffer(binary[:size], dtype=dtype).reshape(shape), size
    if "data" not in t:
        raise BadRequest(f"input {name!r}: no 'data' and no binary_data_size")
    data = t["data"]
    if isinstance(data, np.ndarray):  # exported straight from the parser (json_tensors)
        array = _cast(name, data, dtype, datatype)
    else:
        try:
            array = np.asarray(data, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadRequest(f"input {name!r}: data is not {datatype}: {exc}") from exc
    if array.size != count:
        raise BadRequest(f"input {name!r}: {array.size} values given, shape {shape} needs {count}")
    return array.reshape(shape), 0


def _cast(name: str, flat: np.ndarray, dtype: np.dtype[Any], datatype: str) -> np.ndarray:
    """JSON numbers (as float64/int64/uint64) to the input's dtype, refusing integers out of the
    dtype's range as ``np.asarray`` on a list does (instead of wrapping them)."""
    if dtype.kind in "iu" and flat.dtype.kind in "iu" and flat.size:
        info = np.iinfo(dtype)
        lo, hi = flat.min(), flat.max()
        if int(lo) < info.min or int(hi) > info.max:
            bad = lo if int(lo) < info.min else hi
            raise BadRequest(f"input {name!r}: data is not {datatype}: {int(bad)} is out of its range")
    return flat.astype(dtype, copy=False)


def encode_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary data, the JSON header's length.
    ``outputs`` holds the tensors to return, in order; ``parameters`` become the response's."""
    wanted = request.outputs or tuple(RequestedOutput(n, request.binary_output) for n in outputs)
    head: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": []}
    if request.id is not None:
        head["id"] = request.id
    if parameters:
        head["parameters"] = parameters
    blobs: list[bytes] = []
    for out in wanted:
        arr = np.ascontiguousarray(outputs[out.name])
        entry: dict[str, Any] = {
            "name": out.name,
            "datatype": oip_datatype(arr.dtype),
            "shape": list(arr.shape),
        }
        if out.binary:
            raw = arr.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        head["outputs"].append(entry)
    header = json.dumps(head).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
