"""Request bodies (answers are plain JSON built in :mod:`fleet_server.api.views`).

A body that is a wire contract (registration) is read by the contract itself
(:class:`~agent.contracts.registration.RegistrationRequest`): the pydantic model only describes it
for the OpenAPI document, and a test holds its fields to the contract's.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from agent.contracts import ContractError, RegistrationRequest
from fleet_server.limits import FIELD_LIMITS


class RegisterDevice(BaseModel):
    """:class:`RegistrationRequest` as FastAPI sees it; the contract decides what is valid."""

    model_config = ConfigDict(extra="ignore")

    device_id: str = Field(examples=["pi-kitchen-01"])
    profile: str = Field(examples=["raspberry-pi-5"])
    labels: dict[str, str] = Field(default_factory=dict, examples=[{"site": "lab"}])
    facts: dict[str, Any] = Field(
        default_factory=dict,
        description="arch, os, python, cpu_count, memory_mb, runtimes {name: version|null}, agent_version, "
        "inference_url",
    )

    @model_validator(mode="before")
    @classmethod
    def _by_the_contract(cls, data: Any) -> Any:
        try:
            return RegistrationRequest.from_dict(data).to_dict()
        except ContractError as exc:
            raise ValueError(str(exc)) from exc

    def contract(self) -> RegistrationRequest:
        return RegistrationRequest(self.device_id, self.profile, dict(self.labels), dict(self.facts))


# Bounds (fleet_server.limits): a selector matches labels, so it is held to theirs; a member is a
# device id (128 characters at most).
_L = FIELD_LIMITS
LabelKey = Annotated[str, StringConstraints(max_length=_L.label_key_chars)]
LabelValue = Annotated[str, StringConstraints(max_length=_L.label_value_chars)]
DeviceId = Annotated[str, StringConstraints(max_length=128)]


class CreateGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(examples=["lab"], max_length=128)
    devices: list[DeviceId] = Field(
        default_factory=list, description="static members (need not be registered yet)"
    )
    selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=_L.labels, description="label → value; empty matches nothing"
    )


class CreateDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(examples=["digits:1.0"], description="name:version", max_length=257)
    group: str = Field(examples=["lab"], max_length=128)


class CompileAhead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: list[str] = Field(
        min_length=1,
        max_length=256,
        examples=[["x86-64-avx2", "raspberry-pi-5"]],
        description="device profiles to build for",
    )
