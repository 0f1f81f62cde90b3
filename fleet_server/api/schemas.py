"""Request bodies (answers are plain JSON built in :mod:`fleet_server.api.views`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RegisterDevice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    device_id: str = Field(examples=["pi-kitchen-01"])
    profile: str = Field(examples=["raspberry-pi-5"])
    labels: dict[str, str] = Field(default_factory=dict, examples=[{"site": "lab"}])
    facts: dict[str, Any] = Field(
        default_factory=dict,
        description="arch, os, python, cpu_count, memory_mb, runtimes {name: version|null}, agent_version, "
        "inference_url",
    )


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
