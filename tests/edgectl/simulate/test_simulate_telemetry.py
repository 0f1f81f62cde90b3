"""Simulated telemetry follows the Telemetry contract and shows the regressions asked for."""

from __future__ import annotations

import math
import random

import pytest

from agent.contracts.telemetry import Telemetry
from edgectl.simulate import Faults
from edgectl.simulate.telemetry import CLASSES, class_mix, counts, measure


def _window(faults: Faults, new: bool, device: str = "sim-01", seed: int = 0) -> Telemetry:
    return measure(
        device, "digits:2", new_version=new, faults=faults, window_s=5.0, ts=1000.0, rng=random.Random(seed)
    )


def _psi(a: dict[str, int], b: dict[str, int]) -> float:
    ta, tb = sum(a.values()), sum(b.values())
    out = 0.0
    for k in a:
        pa, pb = max(a[k] / ta, 1e-6), max(b[k] / tb, 1e-6)
        out += (pa - pb) * math.log(pa / pb)
    return out


def test_a_window_is_a_valid_telemetry_message() -> None:
    t = _window(Faults(), new=False)
    again = Telemetry.from_json(t.to_json())
    assert again == t
    assert t.requests > 0 and t.latency is not None and t.latency.p50_ms is not None
    assert t.classes is not None and sum(t.classes.values()) == t.requests - t.errors
    assert len(t.classes) == CLASSES and t.model == "digits:2"


def test_a_device_serving_nothing_handled_nothing() -> None:
    t = measure("sim-01", None, new_version=False, faults=Faults(), window_s=5, ts=1.0, rng=random.Random(0))
    assert t.requests == 0 and t.latency is None and t.classes is None
    Telemetry.from_json(t.to_json())


def test_latency_regression_multiplies_p95_of_new_versions_only() -> None:
    f = Faults(latency_regression=1.5)
    old, new = _window(f, new=False), _window(f, new=True)
    assert old.latency and new.latency and old.latency.p95_ms and new.latency.p95_ms
    assert new.latency.p95_ms / old.latency.p95_ms == pytest.approx(1.5, rel=1e-3)
    assert new.latency.p50_ms == old.latency.p50_ms


def test_prediction_shift_moves_class_mass_and_raises_psi() -> None:
    calm, shifted = Faults(), Faults(prediction_shift=0.3)
    base = _window(calm, new=True)
    moved = _window(shifted, new=True)
    same = _window(calm, new=True, seed=1)
    assert base.classes and moved.classes and same.classes
    assert _psi(moved.classes, base.classes) > 0.2
    assert _psi(same.classes, base.classes) < 0.01


def test_error_rate_applies_to_new_versions() -> None:
    f = Faults(error_rate=0.5)
    assert _window(f, new=True).errors > 0.3 * _window(f, new=True).requests
    assert _window(f, new=False).errors <= 1


def test_counts_split_exactly() -> None:
    mix = class_mix(0)
    for total in (0, 1, 7, 1000):
        assert sum(counts(total, mix).values()) == total
