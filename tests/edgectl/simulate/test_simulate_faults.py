"""Which simulated devices fail, go offline or stay mute: fixed by the seed and the device id."""

from __future__ import annotations

import pytest

from agent.contracts.state import ErrorCode
from edgectl.simulate import Faults, device_ids

IDS = device_ids(2000, "sim")


def test_the_same_seed_picks_the_same_devices_and_another_seed_others() -> None:
    a, b, c = Faults(fail_rate=0.2, seed=7), Faults(fail_rate=0.2, seed=7), Faults(fail_rate=0.2, seed=8)
    picked = [d for d in IDS if a.failing(d)]
    assert picked == [d for d in IDS if b.failing(d)]
    assert picked != [d for d in IDS if c.failing(d)]


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_the_shares_are_close_to_the_rates(rate: float) -> None:
    f = Faults(fail_rate=rate, offline_share=rate, seed=3)
    failing = sum(f.failing(d) for d in IDS) / len(IDS)
    offline = sum(f.offline(d) for d in IDS) / len(IDS)
    assert abs(failing - rate) < 0.04 and abs(offline - rate) < 0.04
    if rate in (0.0, 1.0):
        assert failing == offline == rate


def test_failing_and_offline_are_chosen_independently() -> None:
    f = Faults(fail_rate=0.5, offline_share=0.5, seed=1)
    both = sum(f.failing(d) and f.offline(d) for d in IDS) / len(IDS)
    assert 0.2 < both < 0.3


def test_an_offline_device_is_never_also_unresponsive() -> None:
    f = Faults(offline_share=0.5, unresponsive_share=1.0, seed=2)
    assert all(f.offline(d) != f.unresponsive(d) for d in IDS)


def test_a_version_the_device_ran_never_fails_and_fail_versions_narrow_the_rest() -> None:
    f = Faults(fail_rate=1.0, fail_codes=(ErrorCode.LOAD_FAILED,), seed=0)
    assert f.failure("sim-1", "digits:2", set()) is ErrorCode.LOAD_FAILED
    assert f.failure("sim-1", "digits:1", {"digits:1"}) is None  # a roll back works
    only_2 = Faults(fail_rate=1.0, fail_versions=frozenset({"2"}))
    assert only_2.failure("sim-1", "digits:2", set()) is ErrorCode.SELF_TEST_FAILED
    assert only_2.failure("sim-1", "digits:3", set()) is None


def test_the_error_code_is_picked_per_device_among_those_given() -> None:
    codes = (ErrorCode.SELF_TEST_FAILED, ErrorCode.HASH_MISMATCH)
    f = Faults(fail_rate=1.0, fail_codes=codes, seed=5)
    seen = {f.failure(d, "m:2", set()) for d in IDS[:200]}
    assert seen == set(codes)
    assert f.failure("sim-0007", "m:2", set()) == f.failure("sim-0007", "m:3", set())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fail_rate": 1.5}, "fail_rate must be between 0 and 1"),
        ({"offline_share": -0.1}, "offline_share"),
        ({"latency_regression": 0}, "latency_regression must be positive"),
        ({"fail_codes": ()}, "at least one error code"),
    ],
)
def test_bad_knobs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults(**kwargs)  # type: ignore[arg-type]
