"""Request bodies (answers are plain JSON built in :mod:`fleet_server.api.views`).

A body that is a wire contract (registration) is read by the contract itself
(:class:`~agent.contracts.registration.RegistrationRequest`): the pydantic model only describes it
for the OpenAPI document, and a test holds its fields to the contract's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.contracts import ContractError, RegistrationRequest


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


class CreateGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(examples=["lab"])
    devices: list[str] = Field(
        default_factory=list, description="static members (need not be registered yet)"
    )
    selector: dict[str, str] = Field(default_factory=dict, description="label → value; empty matches nothing")


class CreateDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(examples=["digits:1.0"], description="name:version")
    group: str = Field(examples=["lab"])


class CompileAhead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: list[str] = Field(
        min_length=1, examples=[["x86-64-avx2", "raspberry-pi-5"]], description="device profiles to build for"
    )
