"""JSON tensor data read straight into numpy agrees with the standard-library path on every
kind of input, well-formed or not (the same arrays, or the same refusal)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from agent.serving import json_tensors
from agent.serving.errors import BadRequest
from agent.serving.oip import decode_request

pytest.importorskip("simdjson", reason="pysimdjson is not installed (pip install edgefleet[agent])")

PAD = " " * json_tensors.FAST_PARSE_FROM  # makes every body take the fast path


def body(*inputs: dict[str, Any]) -> bytes:
    return (json.dumps({"inputs": list(inputs), "id": "r1", "parameters": {"x": [1, 2]}}) + PAD).encode()


def both(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """decode_request with the fast parser, then with the standard library: each an InferRequest
    or the BadRequest message."""
    out = []
    for fast in (True, False):
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(json_tensors, "simdjson", None)
            try:
                out.append(decode_request(raw, None))
            except BadRequest as exc:
                out.append(str(exc))
    return out[0], out[1]


CASES = [
    {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [0.5, -1.25, 3, 4e-3, 1e30, -0.0]},
    {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1.5, 2], [3, 4]]},
    {"name": "x", "datatype": "FP16", "shape": [3], "data": [1, 2.5, 65504]},
    {"name": "x", "datatype": "FP64", "shape": [2], "data": [1e-300, 1e300]},
    {"name": "x", "datatype": "INT64", "shape": [3], "data": [-(2**63), 0, 2**63 - 1]},
    {"name": "x", "datatype": "UINT64", "shape": [2], "data": [0, 2**64 - 1]},
    {"name": "x", "datatype": "INT8", "shape": [3], "data": [-128, 0, 127]},
    {"name": "x", "datatype": "INT8", "shape": [2], "data": [1, 300]},  # out of range
    {"name": "x", "datatype": "UINT8", "shape": [2], "data": [-1, 3]},  # out of range
    {"name": "x", "datatype": "INT32", "shape": [2], "data": [1.0, 2.0]},
    {"name": "x", "datatype": "BOOL", "shape": [3], "data": [True, False, True]},
    {"name": "x", "datatype": "FP32", "shape": [3], "data": [1, "2", 3]},  # a string
    {"name": "x", "datatype": "FP32", "shape": [4], "data": [1, 2, 3]},  # too few
    {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3]]},  # ragged
    {"name": "x", "datatype": "FP32", "shape": [0], "data": []},
]


@pytest.mark.parametrize("tensor", CASES, ids=[f"{c['datatype']}-{i}" for i, c in enumerate(CASES)])
def test_fast_and_standard_paths_agree(tensor: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = both(body(tensor), monkeypatch)
    if isinstance(slow, str):
        assert isinstance(fast, str), f"fast path accepted what the standard one refused: {slow}"
        assert "'x'" in fast
        return
    assert not isinstance(fast, str), fast
    a, b = fast.inputs["x"], slow.inputs["x"]
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    assert fast.id == slow.id == "r1" and fast.parameters == slow.parameters


def test_big_image_tensor_round_trips_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    fast, slow = both(
        body({"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}), monkeypatch
    )
    np.testing.assert_array_equal(fast.inputs["x"], x)
    np.testing.assert_array_equal(slow.inputs["x"], x)


@pytest.mark.parametrize("raw", [b"{" + b" " * 20000, b"[" * 50000 + b"]" * 50000, b"\xff" * 20000])
def test_malformed_or_deeply_nested_bodies_are_bad_requests(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = both(raw, monkeypatch)
    assert isinstance(fast, str) and isinstance(slow, str)


@pytest.mark.parametrize(
    "tensor",
    [
        {"name": "input", "shape": [1], "datatype": ["FP32"], "data": [1.0]},
        {"name": "input", "shape": [1], "datatype": {"a": 1}, "data": [1.0]},
        {"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0], "parameters": [1]},
        {"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0], "parameters": "x"},
    ],
)
def test_a_datatype_or_parameters_of_the_wrong_json_type_is_a_bad_request(tensor: dict[str, Any]) -> None:
    """Found by the fault tier's fuzzing: these answered 500 (unhashable datatype, ``.get`` on a
    list)."""
    with pytest.raises(BadRequest):
        decode_request(json.dumps({"inputs": [tensor]}).encode(), None)
    body = {"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0]}],
            "outputs": [{"name": "y", "parameters": [1]}]}  # fmt: skip
    with pytest.raises(BadRequest, match="outputs"):
        decode_request(json.dumps(body).encode(), None)
