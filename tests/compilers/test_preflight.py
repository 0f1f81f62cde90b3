"""Pre-flight fit check (pure): memory estimate against the profile, latency against its budget."""

from __future__ import annotations

from dataclasses import replace

import pytest

from compilers.hostcpu import parse_cpu_flags
from compilers.preflight import MemoryEstimate, activation_peak_bytes, check_fit, estimate_memory
from device_profiles import load_profile
from tests.compilers.compiler_fixtures import cnn_model

AVX2 = load_profile("x86-64-avx2")


def test_activation_peak_is_the_largest_node_at_batch_one() -> None:
    # Conv: input 3x8x8 + output 16x8x8 floats = (192 + 1024) * 4 bytes; Relu: 2 * 1024 * 4.
    assert activation_peak_bytes(cnn_model()) == 2 * 16 * 8 * 8 * 4


def test_estimate_adds_weights_activations_and_overhead() -> None:
    est = estimate_memory(cnn_model(), weights_bytes=3 << 20, runtime="onnxruntime")
    assert est.weights_mib == 3.0 and est.overhead_mib == 40.0
    assert est.total_mib == pytest.approx(43.0 + 8192 / (1 << 20))
    assert estimate_memory(cnn_model(), 0, "tensorrt").overhead_mib == 600.0


def test_fits_and_does_not_fit() -> None:
    est = MemoryEstimate(weights_mib=100.0, activations_mib=20.0, overhead_mib=40.0)
    assert check_fit(AVX2, est, None, None).fits_memory
    small = replace(AVX2, memory_mb=256)
    fit = check_fit(small, est, None, None)
    assert not fit.fits_memory and "does NOT fit" in fit.lines()[0]


def test_latency_budget_only_where_measurable() -> None:
    est = MemoryEstimate(1.0, 1.0, 40.0)
    within = check_fit(AVX2, est, 5.0, None)
    assert within.within_latency_budget is True and "build-host latency" in within.latency_note
    over = check_fit(AVX2, est, 25.0, None)
    assert over.within_latency_budget is False and "OVER" in over.latency_note
    unknown = check_fit(AVX2, est, None, "the bundle's runtime does not run on this host")
    assert unknown.within_latency_budget is None and "not measurable here" in unknown.latency_note
    no_budget = check_fit(replace(AVX2, latency_budget_ms=None), est, 5.0, None)
    assert no_budget.within_latency_budget is None and "no latency budget" in no_budget.latency_note


def test_cpu_flags_parsing_finds_vnni() -> None:
    text = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    assert parse_cpu_flags(text) == frozenset({"fpu", "sse", "avx2", "avx512_vnni"})
    assert parse_cpu_flags("Features\t: fp asimd asimddp\n") == frozenset({"fp", "asimd", "asimddp"})
    assert parse_cpu_flags("nothing here") == frozenset()
