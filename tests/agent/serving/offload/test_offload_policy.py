"""Where a request runs, and the breaker that guards the cloud endpoint (pure, explicit clock)."""

from __future__ import annotations

from agent.serving.offload import BreakerState, CircuitBreaker, Route, route


def test_a_request_that_fits_the_budget_runs_locally() -> None:
    assert route(0.010, 0.005, 0.050, cloud_allowed=True) is Route.LOCAL


def test_a_request_that_would_miss_the_budget_goes_to_the_cloud_or_is_shed() -> None:
    assert route(0.048, 0.005, 0.050, cloud_allowed=True) is Route.CLOUD
    assert route(0.048, 0.005, 0.050, cloud_allowed=False) is Route.SHED


def test_without_a_budget_only_a_full_queue_moves_requests() -> None:
    assert route(9.0, 1.0, None) is Route.LOCAL
    assert route(9.0, 1.0, None, queue_full=True) is Route.SHED
    assert route(0.0, 0.0, None, queue_full=True, cloud_allowed=True) is Route.CLOUD


def test_breaker_opens_after_consecutive_failures_and_success_resets_the_count() -> None:
    b = CircuitBreaker(threshold=3, cooldown=2.0)
    for t in range(2):
        assert b.allow(t)
        b.record(False, t)
    b.record(True, 2)  # the count starts again
    for t in range(3, 5):
        b.record(False, t)
    assert b.state is BreakerState.CLOSED
    b.record(False, 5)
    assert b.state is BreakerState.OPEN
    assert not b.allow(6.9)


def test_breaker_half_opens_for_one_probe_and_closes_on_its_success() -> None:
    b = CircuitBreaker(threshold=1, cooldown=2.0)
    b.record(False, 0.0)
    assert not b.allow(1.9)
    assert b.allow(2.0)  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow(2.1)  # only one probe at a time
    b.record(True, 2.2)
    assert b.state is BreakerState.CLOSED and b.allow(2.3)


def test_a_failed_probe_reopens_with_a_longer_cooldown() -> None:
    b = CircuitBreaker(threshold=1, cooldown=2.0, max_cooldown=5.0)
    b.record(False, 0.0)
    assert b.allow(2.0)
    b.record(False, 2.0)
    assert b.state is BreakerState.OPEN and b.cooldown == 4.0
    assert not b.allow(5.9)
    assert b.allow(6.0)
    b.record(False, 6.0)
    assert b.cooldown == 5.0  # capped
    assert b.allow(11.0)
    b.record(True, 11.0)
    assert b.cooldown == 2.0


def test_the_offloader_keeps_the_cloud_share_under_its_cap() -> None:
    from agent.serving.offload import Offloader, OffloadSettings

    # (decide() alone reserves cloud room each time: room enough for the whole run)
    off = Offloader(OffloadSettings(budget=0.05, url="http://127.0.0.1:9", max_share=0.2, max_in_flight=4000))
    try:
        routes = [off.decide(1.0, 0.01) for _ in range(2000)]  # every request misses the budget
        clouds = routes.count(Route.CLOUD)
        assert 0.15 <= clouds / 2000 <= 0.25, clouds  # a moving average: the share, not a count
        assert routes.count(Route.SHED) == 2000 - clouds
        assert off.decide(0.0, 0.01) is Route.LOCAL  # fits: local, whatever the share
    finally:
        off.close()


def test_an_idle_device_remeasures_whatever_the_estimate() -> None:
    assert route(0.0, 0.2, 0.05, cloud_allowed=True) is Route.CLOUD
    assert route(0.0, 0.2, 0.05, cloud_allowed=True, remeasure=True) is Route.LOCAL
    assert route(0.0, 0.2, 0.05, queue_full=True, remeasure=True) is Route.SHED
