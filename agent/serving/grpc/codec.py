"""Open Inference Protocol v2 over gRPC: ``ModelInferRequest`` → numpy arrays and an
:class:`~agent.serving.service.InferResult` → ``ModelInferResponse`` (pure, no I/O).

Inputs come either as ``raw_input_contents`` (one little-endian byte string per input, what
``tritonclient.grpc`` sends) or as typed ``contents`` lists; a request uses one way for all its
inputs. The checks are the HTTP front-end's: a supported datatype, a shape of non-negative sizes,
and exactly as many values (or bytes) as the shape needs. FP16 has no typed list, so it travels
only raw. Outputs always go back as ``raw_output_contents``, as Triton answers (its clients read
only those).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.serving.errors import BadRequest
from agent.serving.grpc import oip_v2_pb2 as pb
from agent.serving.oip import DATATYPES, oip_datatype
from agent.serving.service import InferResult

# The typed list each datatype travels in, and the numpy type of that list's values.
_CONTENTS: dict[str, tuple[str, str]] = {
    "BOOL": ("bool_contents", "bool"),
    "INT8": ("int_contents", "int32"),
    "INT16": ("int_contents", "int32"),
    "INT32": ("int_contents", "int32"),
    "INT64": ("int64_contents", "int64"),
    "UINT8": ("uint_contents", "uint32"),
    "UINT16": ("uint_contents", "uint32"),
    "UINT32": ("uint_contents", "uint32"),
    "UINT64": ("uint64_contents", "uint64"),
    "FP32": ("fp32_contents", "float32"),
    "FP64": ("fp64_contents", "float64"),
}
_LISTS = ("bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
          "fp32_contents", "fp64_contents", "bytes_contents")  # fmt: skip


@dataclass(frozen=True)
class DecodedRequest:
    model_name: str
    model_version: str | None  # None: whichever version is served
    id: str
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None  # None: all outputs
    timeout: float | None  # seconds, from the ``timeout`` parameter (microseconds, as Triton's)


def parameter_value(p: pb.InferParameter) -> Any:
    """The value a parameter holds, ``None`` when it holds none."""
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)


def decode_request(req: pb.ModelInferRequest) -> DecodedRequest:
    """The request's tensors as numpy arrays. Raises :class:`BadRequest` naming what is wrong."""
    if not req.model_name:
        raise BadRequest("model_name is empty")
    raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise BadRequest(f"{len(raw)} raw_input_contents for {len(req.inputs)} inputs (one each is needed)")
    inputs: dict[str, np.ndarray] = {}
    for i, t in enumerate(req.inputs):
        if not t.name:
            raise BadRequest(f"inputs[{i}] has no name")
        if t.name in inputs:
            raise BadRequest(f"input {t.name!r} is given twice")
        inputs[t.name] = _decode_tensor(t, raw[i] if raw else None)
    outputs = None
    if req.outputs:
        outputs = []
        for i, o in enumerate(req.outputs):
            if not o.name:
                raise BadRequest(f"outputs[{i}] has no name")
            outputs.append(o.name)
    return DecodedRequest(
        model_name=req.model_name,
        model_version=req.model_version or None,
        id=req.id,
        inputs=inputs,
        outputs=outputs,
        timeout=_timeout(req.parameters),
    )


def _decode_tensor(t: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    name, datatype = t.name, t.datatype
    if datatype not in DATATYPES:
        raise BadRequest(
            f"input {name!r}: datatype {datatype!r} is not supported (use one of {', '.join(DATATYPES)})"
        )
    shape = list(t.shape)
    if any(d < 0 for d in shape):
        raise BadRequest(f"input {name!r}: shape {shape} has a negative size")
    dtype = np.dtype(DATATYPES[datatype])
    count = math.prod(shape)
    used = [f for f in _LISTS if getattr(t.contents, f)] if t.HasField("contents") else []
    if raw is not None:
        if used:
            raise BadRequest(f"input {name!r}: both contents and raw_input_contents given")
        need = count * dtype.itemsize
        if len(raw) != need:
            raise BadRequest(f"input {name!r}: {len(raw)} bytes of raw data; {datatype} {shape} needs {need}")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)
    if datatype not in _CONTENTS:
        raise BadRequest(f"input {name!r}: {datatype} travels only in raw_input_contents")
    field, wire = _CONTENTS[datatype]
    if any(f != field for f in used):
        raise BadRequest(f"input {name!r}: {datatype} values go in contents.{field}, not {', '.join(used)}")
    values = np.asarray(getattr(t.contents, field), dtype=wire)
    if values.size != count:
        raise BadRequest(f"input {name!r}: {values.size} values given, shape {shape} needs {count}")
    array = values.astype(dtype)
    if wire != dtype.name and not np.array_equal(array, values):
        raise BadRequest(f"input {name!r}: a value does not fit {datatype}")
    return array.reshape(shape)


def _timeout(params: Mapping[str, pb.InferParameter]) -> float | None:
    if "timeout" not in params:
        return None
    value = parameter_value(params["timeout"])
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value / 1e6
    return None


def encode_response(result: InferResult, request_id: str) -> pb.ModelInferResponse:
    """The response for ``result``: every output raw, in order, and the ``served_by`` parameter."""
    resp = pb.ModelInferResponse(
        model_name=result.model_name, model_version=result.model_version, id=request_id
    )
    resp.parameters["served_by"].string_param = result.served_by
    for name, arr in result.outputs.items():
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        resp.outputs.add(name=name, datatype=oip_datatype(arr.dtype), shape=arr.shape)
        resp.raw_output_contents.append(arr.tobytes())
    return resp
