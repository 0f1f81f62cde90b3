"""The server's request schemas describe the wire contracts, they don't redefine them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import ValidationError

from agent.contracts import ContractError, EnrollmentRequest, EnrollmentResponse
from fleet_server.api.schemas import EnrollDevice
from tests.fixtures.enroll import csr_pem, enroll

T = {"token": "eft_x", "csr": "-----BEGIN CERTIFICATE REQUEST-----"}
PAYLOADS: list[Any] = [
    {"device_id": "pi-1", "profile": "raspberry-pi-5", **T},
    {
        "device_id": "pi-1",
        "profile": "raspberry-pi-5",
        "labels": {"site": "lab"},
        "facts": {"arch": "aarch64"},
        **T,
    },
    {"device_id": "pi-1", "profile": "raspberry-pi-5", "labels": None, "extra": 1, **T},
    {"device_id": "pi-1", **T},
    {"device_id": "pi-1", "profile": "raspberry-pi-5"},
    {"device_id": "pi-1", "profile": "raspberry-pi-5", "token": 5, "csr": "x"},
    {"device_id": 7, "profile": "raspberry-pi-5", **T},
    {"device_id": "pi-1", "profile": "raspberry-pi-5", "labels": {"site": 3}, **T},
    {"device_id": "pi-1", "profile": "raspberry-pi-5", "facts": [], **T},
    {"device_id": None, "profile": "raspberry-pi-5", **T},
    ["pi-1", "raspberry-pi-5"],
]


def contract_accepts(payload: Any) -> EnrollmentRequest | None:
    try:
        return EnrollmentRequest.from_dict(payload)
    except ContractError:
        return None


def schema_accepts(payload: Any) -> EnrollmentRequest | None:
    try:
        return EnrollDevice.model_validate(payload).contract()
    except ValidationError:
        return None


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_enrollment_schema_accepts_and_refuses_what_the_contract_does(payload: Any) -> None:
    assert schema_accepts(payload) == contract_accepts(payload)


def test_some_payloads_are_refused_and_some_accepted() -> None:
    # Guards the test above against a schema and a contract that both accept everything.
    results = [contract_accepts(p) is None for p in PAYLOADS]
    assert any(results) and not all(results)


def test_the_schema_has_the_contracts_fields() -> None:
    assert list(EnrollDevice.model_fields) == [f.name for f in dataclasses.fields(EnrollmentRequest)]


def test_the_servers_enrollment_answer_reads_as_the_contract(settings: Any, start_app: Any) -> None:
    client = start_app(settings)
    body = {
        "device_id": "pi-1",
        "profile": "raspberry-pi-5",
        "labels": {"site": "lab"},
        "csr": csr_pem("pi-1"),
    }
    r = enroll(client, body)
    assert r.status_code == 200
    answer = EnrollmentResponse.from_dict(r.json())
    assert answer.device["device_id"] == "pi-1" and answer.mqtt.port > 0
    assert "BEGIN CERTIFICATE" in answer.certificate and answer.device_api.startswith("https://")
    refused = enroll(client, {**body, "labels": {"site": 3}})
    assert refused.status_code == 400 and "enrollment.labels.site: expected str" in refused.text
