"""Reading a device's MQTT message with bounds, before any contract sees it (pure).

:func:`read_json` refuses a payload over its topic's byte bound before parsing, JSON nested deeper
than the bound before the recursive parser runs (a 200 KB ``[[[…]]]`` raised ``RecursionError``),
and ``NaN``/``Infinity`` (not JSON; a stored one made every answer carrying it fail to encode).
:func:`bound_reported` and :func:`check_status` hold the integers to what the database and a JSON
reader can hold (a generation of 2**63 overflowed the column and failed the write) and bound the
report's stored text (:class:`~fleet_server.limits.FieldLimits`).

Every refusal is a :class:`RejectedMessage` whose ``reason`` is a short fixed word, the label the
bridge counts it under; its text never holds the payload.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from typing import Any

from agent.contracts import ReportedError, ReportedState, Status
from fleet_server.limits import DB_INT_MAX, JSON_INT_MAX, FieldLimits, MessageLimits, truncate

# Reasons, the values of the rejected counter's ``reason`` label.
TOO_LARGE, TOO_DEEP, NOT_JSON, OUT_OF_RANGE = "too_large", "too_deep", "not_json", "out_of_range"

# A JSON string (escapes included): removed before counting brackets, which may appear inside.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class RejectedMessage(Exception):
    """A device message refused before or after parsing; ``reason`` is one of this module's
    reason words, ``detail`` says why without quoting the payload."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def json_depth(payload: bytes) -> int:
    """The deepest nesting of arrays and objects in ``payload`` (which need not be valid JSON),
    found without recursion in time linear in its length."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRING.sub(b"", payload)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999 reads as inf, which no JSON encoder writes back
        raise ValueError("a number too large for a float")
    return value


def read_json(payload: bytes, kind: str, limits: MessageLimits) -> Any:
    """The parsed JSON of a message on a ``kind`` topic. Raises :class:`RejectedMessage`
    (``too_large``, ``too_deep``, ``not_json``)."""
    bound = limits.max_bytes(kind)
    if len(payload) > bound:
        raise RejectedMessage(TOO_LARGE, f"{len(payload)} bytes, the bound for {kind} is {bound}")
    depth = json_depth(payload)
    if depth > limits.max_depth:
        raise RejectedMessage(TOO_DEEP, f"nested {depth} deep, the bound is {limits.max_depth}")
    try:
        return json.loads(payload, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        # json's messages name a position, not the text around it.
        raise RejectedMessage(NOT_JSON, str(exc)[:200]) from exc


def _in_range(value: int | None, top: int, what: str) -> None:
    if value is not None and not 0 <= value <= top:
        raise RejectedMessage(OUT_OF_RANGE, f"{what} is outside 0..{top}")


def bound_reported(rs: ReportedState, fields: FieldLimits) -> ReportedState:
    """``rs`` as it may be stored: its generation must fit the database column and its seq and
    progress counters a JSON reader, its refs the ref column (else :class:`RejectedMessage`,
    ``out_of_range``); its error is truncated with a marker and an inference URL too long for its
    column is left out (the rest of the report still counts)."""
    _in_range(rs.generation, DB_INT_MAX, "reported.generation")
    _in_range(rs.seq, JSON_INT_MAX, "reported.seq")
    for value in (rs.progress or {}).values():
        _in_range(value, JSON_INT_MAX, "a reported.progress counter")
    # The agent counts refused messages by a handful of reasons (agent.inbound.MessageRefused).
    if rs.refused is not None and len(rs.refused) > 16:
        raise RejectedMessage(OUT_OF_RANGE, "reported.refused names more than 16 reasons")
    for reason, value in (rs.refused or {}).items():
        _in_range(value, JSON_INT_MAX, "a reported.refused counter")
        if len(reason) > 64:
            raise RejectedMessage(OUT_OF_RANGE, "a reported.refused reason is over 64 characters")
    for what, ref in (("active", rs.active), ("previous", rs.previous)):
        if ref is not None and len(ref) > fields.ref_chars:
            raise RejectedMessage(OUT_OF_RANGE, f"reported.{what} is over {fields.ref_chars} characters")
    error = rs.error
    if error is not None:
        error = ReportedError(
            code=truncate(error.code, fields.error_code_chars),
            message=truncate(error.message, fields.error_message_chars),
        )
    url = rs.inference_url
    if url is not None and len(url) > fields.url_chars:
        url = None
    return replace(rs, error=error, inference_url=url)


def check_status(st: Status) -> Status:
    """``st`` if its connection number fits the database column. Raises :class:`RejectedMessage`."""
    _in_range(st.connection, DB_INT_MAX, "status.connection")
    return st
