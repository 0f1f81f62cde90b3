"""Contract checks the agent relies on for safety: values that become file names or topic levels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.contracts.errors import ContractError
from agent.contracts.state import DesiredModel, DesiredState
from agent.contracts.topics import DeviceTopic, check_device_id
from agent.update.download import Downloader

GOOD_SHA = "0123456789abcdef" * 4


def model_dict(sha256: str) -> dict[str, Any]:
    return {
        "name": "linear",
        "version": "1",
        "target": "onnx-x86",
        "precision": "fp32",
        "target_path": "linear/1/bundle.tar",
        "url": "/artifacts/linear/1/bundle.tar",
        "size": 10,
        "sha256": sha256,
    }


def test_a_lowercase_hex_sha256_is_accepted(tmp_path: Path) -> None:
    m = DesiredModel.from_dict(model_dict(GOOD_SHA), "m")
    assert Downloader("http://x", tmp_path).part_path(m).parent == tmp_path


@pytest.mark.parametrize(
    "sha256",
    [
        "../" * 17 + "tmp/victim___",  # 64 characters: passed the old length-only check
        "/" + "a" * 63,
        GOOD_SHA.upper(),
        "g" * 64,
        GOOD_SHA[:-1] + "\n",
        GOOD_SHA[:63],
    ],
)
def test_a_sha256_that_is_not_64_lowercase_hex_is_refused(sha256: str) -> None:
    assert len(sha256) in (63, 64)
    with pytest.raises(ContractError, match=r"m\.sha256"):
        DesiredModel.from_dict(model_dict(sha256), "m")


def test_a_traversal_sha256_in_a_desired_state_is_refused() -> None:
    payload = DesiredState("dev-1", 1).to_dict()
    payload["models"] = [model_dict("../" * 17 + "tmp/victim___")]
    with pytest.raises(ContractError, match=r"desired\.models\[0\]\.sha256"):
        DesiredState.from_json(json.dumps(payload))


@pytest.mark.parametrize("device_id", ["dev1\n", "dev1\r\n", "\ndev1", "dev 1", "", "a" * 129, "dev/1"])
def test_invalid_device_ids_are_refused(device_id: str) -> None:
    with pytest.raises(ContractError, match="is not valid"):
        check_device_id(device_id)


def test_a_device_id_with_a_trailing_newline_is_not_a_topic_level() -> None:
    with pytest.raises(ContractError):
        DeviceTopic("dev1\n", "status")
    with pytest.raises(ContractError):
        DeviceTopic.parse("edgefleet/v1/devices/dev1\n/reported")


@pytest.mark.parametrize("device_id", ["dev1", "a" * 128, "jetson-01.lab:7_x"])
def test_valid_device_ids_pass(device_id: str) -> None:
    assert check_device_id(device_id) == device_id


def test_report_order_is_generation_then_seq_then_clock() -> None:
    from agent.contracts.state import ReportedState, UpdateState

    def rs(gen: int, seq: int | None, ts: float) -> ReportedState:
        return ReportedState("d", gen, UpdateState.DOWNLOADING, seq=seq, ts=ts)

    assert rs(1, 9, 5.0).is_older_than(rs(2, 1, 1.0))  # an older generation, whatever else
    assert rs(2, 3, 9.0).is_older_than(rs(2, 4, 1.0))  # seq wins over a clock that went back
    assert not rs(2, 4, 1.0).is_older_than(rs(2, 4, 1.0))  # a re-sent report is not stale
    assert rs(2, None, 1.0).is_older_than(rs(2, 4, 2.0))  # without seq on one side: the clock
    assert ReportedState.from_json(rs(2, 7, 1.0).to_json()).seq == 7


def desired_dict(generation: int, size: int = 10) -> dict[str, Any]:
    return {
        "schema": "edgefleet.desired/1",
        "device_id": "d1",
        "generation": generation,
        "models": [model_dict(GOOD_SHA) | {"size": size}],
    }


@pytest.mark.parametrize(("generation", "size"), [(2**31, 10), (2**63, 10), (-1, 10), (1, 2**53), (1, 2**70)])
def test_a_desired_state_past_the_servers_bounds_is_refused(generation: int, size: int) -> None:
    """The server stores generations as 32-bit integers and sizes for a JSON reader: an agent
    that took a larger generation would report one the server refuses and ignore every real one
    after it."""
    with pytest.raises(ContractError, match=r"outside 0\.\."):
        DesiredState.from_json(json.dumps(desired_dict(generation, size)).encode())


def test_a_desired_state_at_the_bounds_is_taken() -> None:
    d = DesiredState.from_json(json.dumps(desired_dict(2**31 - 1, 2**53 - 1)).encode())
    assert d.generation == 2**31 - 1 and d.models[0].size == 2**53 - 1


def test_both_sides_hold_the_same_bounds() -> None:
    from agent.contracts import state
    from fleet_server import limits

    assert limits.DB_INT_MAX == state.INT32_MAX == 2**31 - 1
    assert limits.JSON_INT_MAX == state.JSON_INT_MAX == 2**53 - 1
    assert limits.FIELD_LIMITS.error_message_chars == state.ERROR_MESSAGE_MAX == 4096
    cut = state.truncate("x" * 10_000)
    assert len(cut) == 4096 and cut.endswith("chars]") and limits.truncate("x" * 10_000, 4096) == cut
