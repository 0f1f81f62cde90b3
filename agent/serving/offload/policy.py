"""Where one request runs: on the device, on the cloud endpoint, or nowhere (shed). Pure.

The estimate is the one the issue of serving under load asks for: a request arriving now waits
about *queue depth x recent service time* before it runs, then runs for one service time. When
that fits the latency budget it runs locally. When it does not (or the local queue is full), it
goes to the cloud if the endpoint is configured and its breaker lets requests through; otherwise
it is shed at once with a retry hint, because a request queued past its budget is a time-out
that has not happened yet. Without a budget there is nothing to protect: local, unless the queue
is full.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Route(StrEnum):
    LOCAL = "local"
    CLOUD = "cloud"
    SHED = "shed"


@dataclass(frozen=True)
class OffloadSettings:
    """``budget`` in seconds (``None``: no budget); ``url`` of an Open Inference Protocol v2
    server (the fleet server's cloud endpoint, Triton, KServe; ``None``: no offload)."""

    budget: float | None = None
    url: str | None = None
    failure_threshold: int = 3  # consecutive cloud failures that open the breaker
    cooldown: float = 2.0  # seconds the breaker stays open before one probe
    max_in_flight: int = 64  # cloud requests at once; past it the request is shed
    max_share: float | None = None  # the largest share of requests the cloud may take (0 to 1)
    headroom: float = 0.8  # a request is admitted locally if its estimate fits this share of the budget
    # The service time the estimate uses: this quantile of the recent runs (``None``: their mean).
    service_quantile: float | None = 0.9


def route(
    estimated_wait: float,
    service_time: float,
    budget: float | None,
    *,
    queue_full: bool = False,
    cloud_allowed: bool = False,
    remeasure: bool = False,
) -> Route:
    """Pick the route for one request (all times in seconds). ``remeasure``: the device is idle
    and its service time was last measured long ago, so the request runs locally whatever the
    estimate says: an estimate that only local runs update must not keep requests away for ever
    (one slow run, such as a cold start, would otherwise send everything to the cloud)."""
    if remeasure and not queue_full:
        return Route.LOCAL
    if budget is None:
        if not queue_full:
            return Route.LOCAL
    elif not queue_full and estimated_wait + service_time <= budget:
        return Route.LOCAL
    return Route.CLOUD if cloud_allowed else Route.SHED
