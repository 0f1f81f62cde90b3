"""The device's serving settings, each from the first place that sets it (pure, but for the CPU count).

Order: the agent's own settings (flags, environment, config file), then the policies of the
latest desired state (``serving`` and ``offload``), then the device profile, then defaults:

- runtime threads: ``threads`` / ``serving.intra_op_threads`` / profile ``serving.threads`` /
  else up to one per core of the profile's CPU (no more than the CPUs there are), fitted to each
  model at load (one that runs in under a millisecond may be faster on one thread:
  :mod:`agent.runtimes.fit`);
- spinning between runs: ``spinning`` / profile ``serving.spinning`` (off: threads spin only while
  a run goes on);
- batching: ``max_batch`` / ``serving.max_batch_size`` / profile ``serving.max_batch`` (8), and
  ``max_queue_delay_ms`` / ``serving.max_queue_delay_ms`` (2 ms); the queue bound is the agent's;
- the latency budget: ``latency_budget_ms`` / ``serving.latency_budget_ms`` / the profile's;
- offload: ``offload_url``, else the offload policy's endpoint when it is enabled (a relative one,
  such as ``/`` for the fleet server's own cloud endpoint, against the server URL); without an
  endpoint nothing is offloaded or shed by budget (the bounded queue still sheds). The policy's
  ``budget`` caps the share of requests the cloud may take.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urljoin

from agent.config import AgentConfig
from agent.contracts.policy import OffloadPolicy, ServingPolicy
from agent.serving.offload.policy import OffloadSettings
from agent.serving.scheduler import SchedulerSettings
from device_profiles import DeviceProfile

DEFAULT_QUEUE_DELAY_MS = 2.0


@dataclass(frozen=True)
class ServingSetup:
    threads: int
    spinning: bool
    fit_threads: bool  # threads is the most a model gets, not a setting (nothing set it)
    scheduling: SchedulerSettings
    offload: OffloadSettings | None


def _first(*values: float | int | None) -> float | int | None:
    return next((v for v in values if v is not None), None)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, which a container's cpuset narrows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def resolve(
    config: AgentConfig,
    profile: DeviceProfile,
    serving: ServingPolicy | None = None,
    offload: OffloadPolicy | None = None,
    cpus: int | None = None,
) -> ServingSetup:
    """The settings; ``cpus`` (default :func:`available_cpus`) caps the default thread count:
    a profile names a board's cores, and more threads than the CPUs there only contend."""
    serving = serving or ServingPolicy()
    offload = offload or OffloadPolicy()
    chosen = _first(config.threads, serving.intra_op_threads, profile.serving.threads)
    threads = chosen if chosen is not None else min(profile.cpu.cores, cpus or available_cpus())
    max_batch = _first(config.max_batch, serving.max_batch_size, profile.serving.max_batch)
    delay_ms = _first(config.max_queue_delay_ms, serving.max_queue_delay_ms, DEFAULT_QUEUE_DELAY_MS)
    budget_ms = _first(config.latency_budget_ms, serving.latency_budget_ms, profile.latency_budget_ms)
    endpoint = offload.endpoint_url if offload.enabled else None
    url = config.offload_url or (urljoin(config.server + "/", endpoint) if endpoint else None)
    return ServingSetup(
        threads=int(threads or 1),
        fit_threads=chosen is None,
        spinning=profile.serving.spinning if config.spinning is None else config.spinning,
        scheduling=SchedulerSettings(
            max_batch=int(max_batch or 1),
            max_queue_delay=float(delay_ms or 0.0) / 1000,
            queue_limit=config.queue_limit,
        ),
        offload=None
        if url is None
        else OffloadSettings(
            budget=None if budget_ms is None else float(budget_ms) / 1000,
            url=url,
            max_share=offload.budget,
        ),
    )
