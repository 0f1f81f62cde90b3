"""The one codec every contract reads and writes itself with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.contracts import (
    ContractError,
    DesiredModel,
    DesiredState,
    EnrollmentRequest,
    EnrollmentResponse,
    Latency,
    Manifest,
    OffloadPolicy,
    RenewalResponse,
    ReportedError,
    ReportedState,
    ServingPolicy,
    Status,
    Telemetry,
    UpdateState,
)
from agent.contracts.registration import MqttSettings

SHA = "ab" * 32


def model(**kw: Any) -> DesiredModel:
    base: dict[str, Any] = dict(
        name="m", version="1", target="onnx-x86", precision="fp32", target_path="m/1/x.tar",
        url="/artifacts/m/1/x.tar", size=10, sha256=SHA,
    )  # fmt: skip
    return DesiredModel(**{**base, **kw})


@pytest.mark.parametrize(
    "message",
    [
        DesiredState(
            "dev-1",
            3,
            (model(),),
            "dep-1",
            ServingPolicy(20.0, 8, 2.5, 2),
            OffloadPolicy(True, "http://c", 0.3),
        ),
        DesiredState("dev-1", 1),
        ReportedState("dev-1", 2, UpdateState.IDLE, "m:1", None, ReportedError("E", "x"), {"a": 1}, seq=4),
        Status("dev-1", True, 5.0, connection=3),
        Status("dev-1", False, 5.0),
        Telemetry("dev-1", 9.0, 10.0, "m:1", 100, 2, 10.0, Latency(1.0, 2.0, 3.0), 4, 0.1, 50.0, 512.0, 61.0),
        EnrollmentRequest("tok", "dev-1", "x86-64-avx2", "CSR", {"site": "lab"}, {"arch": "x86_64"}),
        EnrollmentResponse(
            "CERT",
            "CA",
            MqttSettings("b", 8883, "3.1.1", 30, tls=True),
            "https://f:1",
            {"signed": {}},
            {},
            12.5,
        ),
        RenewalResponse("CERT", "CA", "2027-01-01T00:00:00+00:00", 12.5),
    ],
)
def test_every_message_reads_back_what_it_wrote(message: Any) -> None:
    assert type(message).from_json(message.to_json()) == message
    assert type(message).from_dict(json.loads(json.dumps(message.to_dict()))) == message


def test_policies_left_at_their_defaults_keep_the_empty_wire_form() -> None:
    d = DesiredState("dev-1", 1).to_dict()
    assert d["serving"] == {} and d["offload"] == {}
    assert ServingPolicy(max_batch_size=4).to_dict() == {"max_batch_size": 4}
    back = DesiredState.from_dict({**d, "serving": {"latency_budget_ms": 15}})
    assert back.serving == ServingPolicy(latency_budget_ms=15.0) and back.offload == OffloadPolicy()


def test_status_leaves_an_unknown_connection_out() -> None:
    assert "connection" not in json.loads(Status("d", True, 1.0).to_json())


def test_a_missing_timestamp_reads_as_zero_not_now() -> None:
    raw = {"schema": "edgefleet.reported/1", "device_id": "d", "generation": 1, "state": "IDLE"}
    assert ReportedState.from_dict(raw).ts == 0.0


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"generation": "7"}, r"^desired\.generation: expected int, got str$"),
        ({"generation": True}, r"^desired\.generation: expected a number, got a boolean$"),
        ({"device_id": None}, r"^desired\.device_id: expected str, got null$"),
        ({"schema": "edgefleet.desired/9"}, r"^desired: schema is 'edgefleet.desired/9'"),
        ({"models": [{"name": "m"}]}, r"^desired\.models\[0\]: missing field 'version'$"),
        ({"models": {}}, r"^desired\.models: expected list, got dict$"),
        ({"serving": {"max_batch_size": 0}}, r"^desired\.serving\.max_batch_size: must be at least 1$"),
        ({"serving": {"latency_budget_ms": "fast"}}, r"^desired\.serving\.latency_budget_ms: expected float"),
        ({"offload": {"enabled": True}}, r"^desired\.offload\.endpoint_url: missing"),
        ({"offload": {"budget": 2}}, r"^desired\.offload\.budget: must be between 0 and 1$"),
    ],
)
def test_errors_name_the_message_and_the_field(change: dict[str, Any], error: str) -> None:
    payload = {**DesiredState("dev-1", 1, (model(),)).to_dict(), **change}
    with pytest.raises(ContractError, match=error):
        DesiredState.from_dict(payload)


def test_enums_nested_contracts_and_dict_values_are_checked() -> None:
    raw = ReportedState("d", 1, UpdateState.IDLE).to_dict()
    with pytest.raises(ContractError, match=r"^reported\.state: unknown value 'NAPPING' \(known: IDLE, "):
        ReportedState.from_dict({**raw, "state": "NAPPING"})
    with pytest.raises(ContractError, match=r"^reported\.error: missing field 'message'$"):
        ReportedState.from_dict({**raw, "error": {"code": "X"}})
    with pytest.raises(ContractError, match=r"^reported\.progress\.bytes: expected int, got str$"):
        ReportedState.from_dict({**raw, "progress": {"bytes": "many"}})
    with pytest.raises(ContractError, match=r"^enrollment\.labels\.site: expected str, got int$"):
        EnrollmentRequest.from_dict(
            {"token": "t", "device_id": "d", "profile": "p", "csr": "c", "labels": {"site": 1}}
        )
    with pytest.raises(ContractError, match=r"^telemetry\.errors: 3 errors in 2 requests$"):
        Telemetry.from_dict({"schema": "edgefleet.telemetry/1", "device_id": "d", "requests": 2, "errors": 3})


def test_unknown_keys_are_ignored_so_older_readers_take_newer_messages() -> None:
    raw = {**Status("d", True, 1.0).to_dict(), "battery": 0.5}
    assert Status.from_dict(raw) == Status("d", True, 1.0)


def test_a_payload_that_is_not_json_is_refused_with_the_message_name() -> None:
    with pytest.raises(ContractError, match=r"^status: payload is not JSON"):
        Status.from_json(b"{nope")
    with pytest.raises(ContractError, match=r"^manifest: payload is not JSON"):
        Manifest.from_json("[1,")


def test_a_desired_model_names_its_model_key_and_keys_are_unique() -> None:
    d = model().to_dict()
    assert d["key"] == "default" and "slot" not in d  # "slot" is the A/B directory's word
    payload = DesiredState("dev-1", 1, (model(), model(version="2"))).to_dict()
    with pytest.raises(ContractError, match=r"^desired\.models: a model key is named twice$"):
        DesiredState.from_dict(payload)
    two = DesiredState("dev-1", 1, (model(), model(version="2", key="detector")))
    assert DesiredState.from_json(two.to_json()) == two


@pytest.mark.parametrize("generation", [-1, 2**31, 1_000_000_000_000, 2**70])
def test_a_generation_outside_the_servers_columns_is_refused(generation: int) -> None:
    """A forged generation of 10^12 or 2^70 would lock the device out of every real rollout."""
    payload = json.loads(DesiredState(device_id="d", generation=1).to_json())
    payload["generation"] = generation
    with pytest.raises(ContractError, match="generation"):
        DesiredState.from_json(json.dumps(payload).encode())
    payload["generation"] = 2**31 - 1
    assert DesiredState.from_json(json.dumps(payload).encode()).generation == 2**31 - 1
