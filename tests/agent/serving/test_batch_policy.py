"""The batching policy: measure, then batch only where it pays (pure, no clock)."""

from __future__ import annotations

import pytest

from agent.serving.batch_policy import BatchPolicy, buckets


def test_buckets_are_powers_of_two_up_to_the_maximum() -> None:
    assert buckets(1) == [1]
    assert buckets(8) == [1, 2, 4, 8]
    assert buckets(6) == [1, 2, 4, 6]


def test_unmeasured_buckets_are_tried_once_the_queue_can_fill_them() -> None:
    p = BatchPolicy(max_batch=4)
    assert p.plan(1).rows == 1
    p.observe(1, 0.010)
    assert p.plan(1).rows == 1  # 2 rows can't be filled from 1 queued
    assert p.plan(3).rows == 2
    p.observe(2, 0.020)
    assert p.plan(5).rows == 4


def test_where_batching_does_not_pay_it_runs_one_at_a_time_and_never_waits() -> None:
    p = BatchPolicy(max_batch=8, probe_every=1000)
    for rows, per_row in ((1, 0.010), (2, 0.011), (4, 0.012), (8, 0.012)):  # CPU: batch 8 = 0.84x
        p.observe(rows, rows * per_row)
    for queued in (1, 3, 16):
        plan = p.plan(queued)
        assert (plan.rows, plan.wait) == (1, 0.0)


def test_where_batching_pays_it_fills_batches_and_waits_for_them() -> None:
    p = BatchPolicy(max_batch=8, max_delay=0.003, probe_every=1000)
    for rows, per_row in ((1, 0.010), (2, 0.006), (4, 0.003), (8, 0.002)):  # GPU-like
        p.observe(rows, rows * per_row)
    assert p.plan(16).rows == 8 and p.plan(16).wait == 0.0
    plan = p.plan(3)
    assert plan.rows == 8 and plan.wait == pytest.approx(0.003)


def test_a_probe_finds_a_bucket_that_became_better() -> None:
    p = BatchPolicy(max_batch=2, probe_every=5, alpha=1.0)
    p.observe(1, 0.010)
    p.observe(2, 0.030)  # batch 2 worse at first
    plans = [p.plan(4).rows for _ in range(5)]
    assert plans.count(2) == 1  # one probe in five
    p.observe(2, 0.010)  # the probe measured 5 ms a row
    assert p.plan(4).rows == 2


def test_max_batch_one_turns_batching_off() -> None:
    p = BatchPolicy(max_batch=1)
    assert p.plan(100).rows == 1
    with pytest.raises(ValueError):
        BatchPolicy(max_batch=0)
