"""The bounded reading of device messages and the stored-field bounds (pure)."""

from __future__ import annotations

import pytest

from agent.contracts import ReportedError, ReportedState, Status, UpdateState
from fleet_server.inbound import RejectedMessage, bound_reported, check_status, json_depth, read_json
from fleet_server.limits import DB_INT_MAX, FIELD_LIMITS, MessageLimits, truncate


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(b'{"a": "[[[[[[\\"[[[["}') == 1
    assert json_depth(b"[" * 5000) == 5000  # no recursion, even on broken input


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * 101, "too_large"),
        (b"[" * 9 + b"]" * 9, "too_deep"),
        (b'{"a": NaN}', "not_json"),
        (b'{"a": -Infinity}', "not_json"),
        (b'{"a": 1e999}', "not_json"),
        (b"\xff", "not_json"),
    ],
)
def test_read_json_refuses_before_or_while_parsing(payload: bytes, reason: str) -> None:
    limits = MessageLimits(reported_bytes=100, max_depth=8)
    with pytest.raises(RejectedMessage) as got:
        read_json(payload, "reported", limits)
    assert got.value.reason == reason
    assert b"x" * 50 not in str(got.value).encode()  # never the payload


def test_read_json_takes_what_is_within_bounds() -> None:
    limits = MessageLimits(reported_bytes=100, max_depth=8)
    assert read_json(b'{"a": [[1.5]]}', "reported", limits) == {"a": [[1.5]]}


def report(**kw: object) -> ReportedState:
    fields: dict[str, object] = {"device_id": "d1", "generation": 1, "state": UpdateState.IDLE} | kw
    return ReportedState(**fields)  # type: ignore[arg-type]


def test_report_integers_must_fit_their_columns() -> None:
    assert bound_reported(report(generation=DB_INT_MAX), FIELD_LIMITS).generation == DB_INT_MAX
    for bad in (report(generation=DB_INT_MAX + 1), report(generation=-1), report(seq=2**63)):
        with pytest.raises(RejectedMessage, match="out_of_range"):
            bound_reported(bad, FIELD_LIMITS)
    with pytest.raises(RejectedMessage):
        check_status(Status(device_id="d1", online=True, connection=2**63))
    assert check_status(Status(device_id="d1", online=True, connection=7)).connection == 7


def test_report_text_is_truncated_or_refused_per_field() -> None:
    long_error = ReportedError(code="C" * 500, message="m" * 100_000)
    rs = bound_reported(report(error=long_error, inference_url="http://x/" + "u" * 600), FIELD_LIMITS)
    assert rs.error is not None
    assert len(rs.error.message) == FIELD_LIMITS.error_message_chars
    assert rs.error.message.startswith("mmm") and "truncated" in rs.error.message
    assert len(rs.error.code) <= FIELD_LIMITS.error_code_chars
    assert rs.inference_url is None
    with pytest.raises(RejectedMessage):
        bound_reported(report(active="a" * 400), FIELD_LIMITS)


def test_truncate_keeps_short_text_and_marks_the_cut() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("y" * 1000, 100)
    assert len(cut) == 100 and cut.endswith("chars]") and "truncated" in cut


def test_reported_refusal_counts_are_bounded() -> None:
    assert bound_reported(report(refused={"malformed": 3}), FIELD_LIMITS).refused == {"malformed": 3}
    for bad in ({"malformed": 2**63}, {f"r{i}": 1 for i in range(17)}, {"r" * 65: 1}):
        with pytest.raises(RejectedMessage, match="out_of_range"):
            bound_reported(report(refused=bad), FIELD_LIMITS)
