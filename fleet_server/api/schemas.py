"""Request bodies (answers are plain JSON built in :mod:`fleet_server.api.views`).

A body that is a wire contract (enrollment) is read by the contract itself
(:class:`~agent.contracts.registration.EnrollmentRequest`): the pydantic model only describes it
for the OpenAPI document, and a test holds its fields to the contract's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from agent.contracts import ContractError, EnrollmentRequest
from agent.contracts.policy import ServingPolicy
from fleet_server.errors import InvalidRequestError
from fleet_server.limits import FIELD_LIMITS
from fleet_server.rollout.policy import GroupOffload
from fleet_server.rollout.spec import RolloutSpec


class EnrollDevice(BaseModel):
    """:class:`EnrollmentRequest` as FastAPI sees it; the contract decides what is valid."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(description="an enrollment token (edgectl devices enroll-token create)")
    device_id: str = Field(examples=["pi-kitchen-01"])
    profile: str = Field(examples=["raspberry-pi-5"])
    csr: str = Field(description="PEM certificate signing request for the key made on the device")
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
            return EnrollmentRequest.from_dict(data).to_dict()
        except ContractError as exc:
            raise ValueError(str(exc)) from exc

    def contract(self) -> EnrollmentRequest:
        return EnrollmentRequest(
            self.token, self.device_id, self.profile, self.csr, dict(self.labels), dict(self.facts)
        )


class EnrollTokenBody(BaseModel):
    """A new enrollment token: the group its devices join, labels they get, uses and lifetime."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(examples=["kitchen"])
    labels: dict[str, str] = Field(default_factory=dict, examples=[{"site": "lab"}])
    expires_in_s: float = Field(3600.0, description="seconds until the token expires (default one hour)")
    uses: int = Field(1, description="how many devices may enroll with it (default 1)")


P = TypeVar("P", ServingPolicy, GroupOffload)


def _merged(cls: type[P], base: P | None, given: dict[str, Any]) -> P:
    data = {**(base.to_dict() if base is not None else {}), **given}
    try:
        return cls.from_dict({k: v for k, v in data.items() if v is not None})
    except ContractError as exc:
        raise InvalidRequestError(str(exc)) from None


class ServingBody(BaseModel):
    """A group's :class:`ServingPolicy`; the contract decides what is valid. A field left out
    means the agent's default."""

    model_config = ConfigDict(extra="forbid", strict=True)

    latency_budget_ms: float | None = Field(
        None, description="wait a request may take locally", examples=[50]
    )
    max_batch_size: int | None = Field(None, description="largest batch the device's batcher forms")
    max_queue_delay_ms: float | None = Field(None, description="longest a request waits for a batch")
    intra_op_threads: int | None = Field(None, description="the runtime's thread count")

    def contract(self, base: ServingPolicy | None = None) -> ServingPolicy:
        """The policy as the contract reads it: the fields given here over ``base`` (a field
        given as ``null`` goes back to its default). Raises :class:`InvalidRequestError` (400)
        naming the field for a value the contract refuses."""
        return _merged(ServingPolicy, base, self.model_dump(include=self.model_fields_set))


class OffloadBody(BaseModel):
    """A group's offload policy (:class:`GroupOffload`): ``enabled`` with no ``endpoint_url``
    means this fleet server's own cloud endpoint (under ``/v2`` of its public URL)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = False
    endpoint_url: str | None = Field(
        None,
        description="an OIP v2 server (Triton, KServe, another fleet server)",
        examples=["https://gpu.example:8000"],
    )
    budget: float | None = Field(None, description="largest share of requests (0 to 1) sent to the cloud")

    def contract(self, base: GroupOffload | None = None) -> GroupOffload:
        """The policy as the contract reads it: the fields given here over ``base`` (a field
        given as ``null`` goes back to its default). Raises :class:`InvalidRequestError` (400)
        naming the field for a value the contract refuses."""
        return _merged(GroupOffload, base, self.model_dump(include=self.model_fields_set))


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
    serving: ServingBody | None = Field(None, description="serving policy (left out: the defaults)")
    offload: OffloadBody | None = Field(None, description="offload policy (left out: off)")


class UpdateGroup(BaseModel):
    """Changes to a group's policies, as a merge patch: a field given sets it, a field given as
    ``null`` goes back to its default, anything left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    serving: ServingBody | None = None
    offload: OffloadBody | None = None


class CreateDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(examples=["digits:1.0"], description="name:version", max_length=257)
    group: str = Field(examples=["lab"], max_length=128)
    rollout: dict[str, Any] | None = Field(
        default=None,
        description=(
            "how it rolls out (docs/api.md): waves [{percent}|{count}], ramp_base and ramp_factor, "
            "bake_time_s, max_failure_rate, min_executed, max_per_minute, device_timeout_s, "
            "health_window_s, auto_rollback, gates {max_error_rate, max_p95_regression, "
            "max_offload_ratio, max_prediction_psi, min_requests}; default: one wave, no failure allowed"
        ),
        examples=[{"waves": [{"percent": 10}, {"percent": 100}], "bake_time_s": 60}],
    )

    def spec(self) -> RolloutSpec | None:
        """The rollout spec, checked. Raises :class:`InvalidRequestError` (400) naming the field."""
        if self.rollout is None:
            return None
        try:
            return RolloutSpec.from_dict(self.rollout, "rollout")
        except ContractError as exc:
            raise InvalidRequestError(str(exc)) from None


class CompileAhead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: list[str] = Field(
        min_length=1,
        max_length=256,
        examples=[["x86-64-avx2", "raspberry-pi-5"]],
        description="device profiles to build for",
    )


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(examples=["ci"], max_length=128, description="unique, also among revoked tokens")
    role: Literal["viewer", "deployer", "admin"] = Field(examples=["deployer"])
    expires_in_s: int | None = Field(
        None, gt=0, le=315_360_000, description="lifetime in seconds (left out: never expires)"
    )
