"""The serving and offload policies a desired state carries (server → device).

Both are all-optional: a field left out (``None``) means "the agent's own default", so the empty
object ``{}`` (what every desired state carried before the policies had fields) keeps meaning
"defaults everywhere", and a policy writes only the fields that are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from agent.contracts.codec import Contract
from agent.contracts.errors import ContractError


@dataclass(frozen=True)
class ServingPolicy(Contract):
    """How the device serves: ``latency_budget_ms`` is the wait a request may take locally (the
    offload decision and the batcher work against it); ``max_batch_size`` and
    ``max_queue_delay_ms`` bound the batcher; ``intra_op_threads`` is the runtime's thread count."""

    WHERE: ClassVar[str] = "serving"
    OMIT_DEFAULTS: ClassVar[bool] = True

    latency_budget_ms: float | None = None
    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    intra_op_threads: int | None = None

    def check(self, where: str) -> None:
        for name in ("latency_budget_ms", "max_queue_delay_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ContractError(f"{where}.{name}: must not be negative")
        for name in ("max_batch_size", "intra_op_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ContractError(f"{where}.{name}: must be at least 1")


@dataclass(frozen=True)
class OffloadPolicy(Contract):
    """Whether and where the device sends overflow: ``enabled`` turns it on, ``endpoint_url`` is
    the cloud endpoint (Open Inference Protocol v2), ``budget`` the largest share of requests
    (0 to 1) that may go there."""

    WHERE: ClassVar[str] = "offload"
    OMIT_DEFAULTS: ClassVar[bool] = True

    enabled: bool = False
    endpoint_url: str | None = None
    budget: float | None = None

    def check(self, where: str) -> None:
        if self.budget is not None and not 0.0 <= self.budget <= 1.0:
            raise ContractError(f"{where}.budget: must be between 0 and 1")
        if self.enabled and not self.endpoint_url:
            raise ContractError(f"{where}.endpoint_url: missing (offload is enabled)")
