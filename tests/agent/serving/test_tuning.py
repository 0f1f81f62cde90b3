"""Serving settings come from the agent's own settings, then the desired state's policies, then
the device profile, then defaults; offload only where an endpoint is named."""

from __future__ import annotations

from typing import Any

from agent.config import load_config
from agent.contracts.policy import OffloadPolicy, ServingPolicy
from agent.serving.tuning import resolve
from device_profiles import load_profile

BASE = {"server": "http://fleet:8080", "device_id": "dev-1", "profile": "raspberry-pi-5", "data_dir": "/d"}
PI = load_profile("raspberry-pi-5")  # 4 cores, 50 ms budget


def cfg(**given: Any) -> Any:
    return load_config(BASE | given, {})


def test_defaults_come_from_the_profile() -> None:
    s = resolve(cfg(), PI, cpus=8)
    assert s.threads == PI.cpu.cores and s.spinning is False
    assert s.fit_threads  # up to one per core, fitted to each model at load
    assert s.scheduling.max_batch == 8 and s.scheduling.max_queue_delay == 0.002
    assert s.offload is None  # no endpoint: nothing is offloaded or shed by budget


def test_the_default_thread_count_is_no_more_than_the_cpus_there_are() -> None:
    assert resolve(cfg(), PI, cpus=2).threads == 2  # a 4-core profile in a 2-CPU container
    assert resolve(cfg(threads=4), PI, cpus=2).threads == 4  # a number someone set is kept


def test_the_desired_policies_win_over_the_profile() -> None:
    serving = ServingPolicy(latency_budget_ms=30, max_batch_size=4, max_queue_delay_ms=1, intra_op_threads=2)
    offload = OffloadPolicy(enabled=True, endpoint_url="http://cloud:8000", budget=0.5)
    s = resolve(cfg(), PI, serving, offload)
    assert s.threads == 2 and s.scheduling.max_batch == 4 and s.scheduling.max_queue_delay == 0.001
    assert not s.fit_threads  # a number someone set is kept as it is
    assert s.offload is not None
    assert (s.offload.url, s.offload.budget, s.offload.max_share) == ("http://cloud:8000", 0.03, 0.5)


def test_the_agents_own_settings_win_over_everything() -> None:
    serving = ServingPolicy(latency_budget_ms=30, max_batch_size=4, intra_op_threads=2)
    offload = OffloadPolicy(enabled=True, endpoint_url="http://cloud:8000")
    c = cfg(threads=1, spinning=True, max_batch=1, latency_budget_ms=80, offload_url="http://triton:8000")
    s = resolve(c, PI, serving, offload)
    assert s.threads == 1 and s.spinning is True and s.scheduling.max_batch == 1
    assert s.offload is not None and (s.offload.url, s.offload.budget) == ("http://triton:8000", 0.08)


def test_a_disabled_offload_policy_names_no_endpoint() -> None:
    offload = OffloadPolicy(enabled=False, endpoint_url="http://cloud:8000")
    assert resolve(cfg(), PI, None, offload).offload is None
    # The profile's budget still applies once an endpoint is set by the agent's settings.
    s = resolve(cfg(offload_url="http://cloud:8000"), PI)
    assert s.offload is not None and s.offload.budget == PI.latency_budget_ms / 1000  # type: ignore[operator]


def test_a_relative_endpoint_is_the_fleet_servers_own() -> None:
    s = resolve(cfg(), PI, None, OffloadPolicy(enabled=True, endpoint_url="/"))
    assert s.offload is not None and s.offload.url == "http://fleet:8080/"
