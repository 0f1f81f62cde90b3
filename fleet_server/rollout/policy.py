"""A group's serving and offload policy, and what a device of the group is told (pure).

A group stores the device contract's :class:`~agent.contracts.ServingPolicy` as is. Its offload
policy is :class:`GroupOffload`: the contract's fields, except that ``enabled`` with no
``endpoint_url`` is allowed and means "this fleet server's own cloud endpoint" (it serves the same
models under ``/v2``). :func:`device_offload` turns it into the contract the device gets, filling
in the server's public URL; a device can't resolve a relative endpoint, so without a public URL
the cloud target is left out (offload stays off) and the caller says so.

Rules for the rollout: every device of a deployment gets the policy of the group the deployment
targets (a device in several groups follows one deployment, so one group's policy), and a policy
that differs from the one in a device's stored desired state is a change like a new model: one
generation more (:mod:`fleet_server.rollout.desired`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from agent.contracts.codec import Contract
from agent.contracts.errors import ContractError
from agent.contracts.policy import OffloadPolicy, ServingPolicy


@dataclass(frozen=True)
class GroupOffload(Contract):
    """A group's offload policy as stored and as the API takes it: ``enabled`` without
    ``endpoint_url`` targets this server's cloud endpoint; ``budget`` is the largest share of
    requests (0 to 1) that may go to the cloud."""

    WHERE: ClassVar[str] = "offload"
    OMIT_DEFAULTS: ClassVar[bool] = True

    enabled: bool = False
    endpoint_url: str | None = None
    budget: float | None = None

    def check(self, where: str) -> None:
        """Raises :class:`~agent.contracts.ContractError` for a budget outside 0..1 or an
        endpoint that is not an absolute http(s) URL."""
        # The contract's own rules, less "an enabled policy names its endpoint".
        OffloadPolicy(enabled=False, budget=self.budget).check(where)
        url = self.endpoint_url
        if url is not None and not url.startswith(("http://", "https://")):
            raise ContractError(f"{where}.endpoint_url: not an http(s) URL: {url!r}")

    @property
    def uses_cloud(self) -> bool:
        """Whether this policy targets the fleet server's own cloud endpoint."""
        return self.enabled and not self.endpoint_url


@dataclass(frozen=True)
class GroupPolicy:
    """The policies a group gives its devices (``None`` columns read as these defaults)."""

    serving: ServingPolicy = field(default_factory=ServingPolicy)
    offload: GroupOffload = field(default_factory=GroupOffload)


def device_offload(offload: GroupOffload, cloud_url: str | None) -> OffloadPolicy:
    """The offload policy a device is told: ``offload`` with the cloud endpoint filled in from
    ``cloud_url`` (the server's public URL) where the group asks for it. Without ``cloud_url``
    the endpoint is ``/``, which the device resolves against the server URL it was started with,
    as it does a bundle's relative URL."""
    if not offload.uses_cloud:
        return OffloadPolicy(offload.enabled, offload.endpoint_url, offload.budget)
    return OffloadPolicy(True, cloud_url.rstrip("/") if cloud_url else "/", offload.budget)
