"""Read an inference request's JSON without turning tensor data into Python lists.

A 224x224x3 image as JSON is 150,528 numbers. Parsed the ordinary way each becomes a Python float
in a list (about 30 bytes of Python objects per number and ~28 ms of one core), then numpy copies
them again. With ``pysimdjson`` installed (the agent extra brings it) the document is parsed in C
and each input's ``data`` array is exported straight into a numpy buffer; everything else in the
request (names, shapes, parameters) is small and converted as usual. Without it, or when an
array is not plain numbers (booleans, strings, mixed), the standard library parses it.

:func:`load_request` returns the request as plain Python objects, except that an input's
``data`` may be a flat numpy array (float64, int64 or uint64, as JSON numbers come).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from agent.serving.errors import BadRequest

simdjson: Any
try:
    import simdjson
except ImportError:  # pragma: no cover - the agent extra installs it; stdlib json is the fallback
    simdjson = None

# Below this a header is names and shapes only (binary requests): the stdlib is as quick.
FAST_PARSE_FROM = 16 << 10
_BUFFERS = (("i", np.int64), ("u", np.uint64), ("d", np.float64))


def load_request(head: bytes) -> Any:
    """The parsed request. Raises :class:`BadRequest` for a body that is not JSON (or nests past
    the parser's depth limit)."""
    if simdjson is not None and len(head) >= FAST_PARSE_FROM:
        try:
            doc = simdjson.Parser().parse(head)
        except (ValueError, RuntimeError) as exc:
            raise BadRequest(f"request is not JSON: {exc}") from exc
        return _convert(doc)
    try:
        return json.loads(head)
    except RecursionError:
        raise BadRequest("request is not JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request is not JSON: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _convert(doc: Any) -> Any:
    if not isinstance(doc, simdjson.Object):
        return _plain(doc)
    out: dict[str, Any] = {}
    for key in doc.keys():  # noqa: SIM118 - a simdjson Object, not a dict
        value = doc[key]
        if key == "inputs" and isinstance(value, simdjson.Array):
            out[key] = [_input(t) for t in value]
        else:
            out[key] = _plain(value)
    return out


def _input(t: Any) -> Any:
    if not isinstance(t, simdjson.Object):
        return _plain(t)
    out: dict[str, Any] = {}
    for key in t.keys():  # noqa: SIM118
        value = t[key]
        out[key] = _numbers(value) if key == "data" and isinstance(value, simdjson.Array) else _plain(value)
    return out


def _numbers(array: Any) -> Any:
    """The array as a flat numpy array when it holds only numbers, else as a Python list. Nested
    arrays are flattened; the caller checks the count against the declared shape."""
    for of_type, dtype in _BUFFERS:
        try:
            return np.frombuffer(array.as_buffer(of_type=of_type), dtype=dtype)
        except (TypeError, ValueError):  # not all of that type (floats among ints, bools, strings)
            continue
    return array.as_list()
