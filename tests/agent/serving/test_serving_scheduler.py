"""The per-model scheduler: batching that returns each request its own rows, a bounded queue,
deadlines, and a failing batch that never fails its neighbours."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import Future

import numpy as np
import pytest

from agent.runtimes.base import RuntimeAdapter
from agent.runtimes.bundle_dir import verify_bundle_dir
from agent.runtimes.registry import load_bundle
from agent.serving.errors import BadRequest, DeadlineExceeded, Overloaded
from agent.serving.scheduler import ModelScheduler, SchedulerSettings
from tests.agent.agent_testkit import BuiltBundle
from tests.agent.serving.serving_models import Wrapped


class Recording(Wrapped):
    """The real ONNX Runtime adapter, recording batch sizes and held at a gate when asked."""

    name = "recording"

    def __init__(self, inner: RuntimeAdapter) -> None:
        super().__init__(inner)
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.set()
        self.gate.wait(10)
        x = inputs["input"]
        if np.isnan(x).any():
            raise ValueError("input 'input' holds NaN")
        self.batches.append(x.shape[0])
        return self.inner.infer(inputs)


@pytest.fixture
def adapter(bundles: dict[str, BuiltBundle]) -> Recording:
    b = bundles["1"]
    manifest = verify_bundle_dir(b.dir)
    return Recording(load_bundle(b.dir, manifest))


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def test_batched_requests_each_get_their_own_rows(adapter: Recording) -> None:
    s = ModelScheduler(adapter, adapter.manifest, SchedulerSettings(max_batch=8, max_queue_delay=0.05))
    s.policy.per_row.update({1: 1.0, 2: 0.5, 4: 0.25, 8: 0.1})  # as if batching had paid here
    s.policy.probe_every = 10**9
    adapter.gate.clear()
    first = s.submit({"input": rows(1, 0)})
    assert adapter.entered.wait(5)
    xs = [rows(1 + i % 2, i) for i in range(1, 7)]  # 9 rows behind the first
    futures: list[Future[dict[str, np.ndarray]]] = [s.submit({"input": x}) for x in xs]
    adapter.gate.set()
    first.result(5)
    for x, f in zip(xs, futures, strict=True):
        want = adapter.inner.infer({"input": x})["logits"]
        np.testing.assert_allclose(f.result(5)["logits"], want, rtol=1e-5, atol=1e-6)
    assert max(adapter.batches) > 1 and max(adapter.batches) <= 8
    s.stop()


def test_a_full_queue_refuses_with_a_retry_hint(adapter: Recording) -> None:
    s = ModelScheduler(adapter, adapter.manifest, SchedulerSettings(max_batch=1, queue_limit=2))
    adapter.gate.clear()
    running = s.submit({"input": rows(1, 0)})
    assert adapter.entered.wait(5)
    queued = [s.submit({"input": rows(1, i)}) for i in (1, 2)]
    with pytest.raises(Overloaded) as err:
        s.submit({"input": rows(1, 3)})
    assert err.value.retry_after > 0
    adapter.gate.set()
    for f in (running, *queued):
        assert f.result(5)["logits"].shape == (1, 3)
    s.stop()


def test_a_request_past_its_deadline_is_not_run(adapter: Recording) -> None:
    s = ModelScheduler(adapter, adapter.manifest, SchedulerSettings(max_batch=1))
    adapter.gate.clear()
    running = s.submit({"input": rows(1, 0)})
    assert adapter.entered.wait(5)
    late = s.submit({"input": rows(1, 1)}, timeout=0.01)
    threading.Event().wait(0.05)
    adapter.gate.set()
    running.result(5)
    with pytest.raises(DeadlineExceeded):
        late.result(5)
    assert adapter.batches == [1]
    s.stop()


def test_one_bad_request_in_a_batch_fails_alone(adapter: Recording) -> None:
    s = ModelScheduler(adapter, adapter.manifest, SchedulerSettings(max_batch=4, max_queue_delay=0.05))
    s.policy.per_row.update({1: 1.0, 2: 0.5, 4: 0.25})
    s.policy.probe_every = 10**9
    adapter.gate.clear()
    first = s.submit({"input": rows(1, 0)})
    assert adapter.entered.wait(5)
    bad = rows(1, 1)
    bad[0, 0] = np.nan
    good = [s.submit({"input": rows(1, 2)}), s.submit({"input": bad}), s.submit({"input": rows(1, 3)})]
    adapter.gate.set()
    first.result(5)
    assert good[0].result(5)["logits"].shape == (1, 3)
    assert good[2].result(5)["logits"].shape == (1, 3)
    with pytest.raises(BadRequest, match="NaN"):
        good[1].result(5)
    s.stop()


def test_a_model_without_a_batch_axis_is_never_stacked(adapter: Recording) -> None:
    m = adapter.manifest
    fixed = dataclasses.replace(m, inputs=(dataclasses.replace(m.inputs[0], shape=(1, 4)),))
    s = ModelScheduler(adapter, fixed, SchedulerSettings(max_batch=8))
    assert not s.batchable and s.policy.max_batch == 1
    assert ModelScheduler(adapter, m, SchedulerSettings(max_batch=8)).batchable


class Jittery(Recording):
    """Runs that take the durations given, in turn (a device throttled now and then)."""

    name = "jittery"

    def __init__(self, inner: RuntimeAdapter, durations: list[float]) -> None:
        super().__init__(inner)
        self.durations = durations

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = super().infer(inputs)
        if self.durations:
            threading.Event().wait(self.durations.pop(0))
        return out


def test_the_service_time_tail_sees_the_slow_runs_the_mean_hides(adapter: Recording) -> None:
    """One run in ten takes 60 ms, the rest 1 ms: the mean estimate stays far below 60 ms while
    the 0.9 quantile, which the offload admission uses, is the slow run's."""
    slow = Jittery(adapter.inner, [0.0] + [0.001] * 9 + [0.06] + [0.001] * 9 + [0.06])
    s = ModelScheduler(slow, adapter.manifest, SchedulerSettings(max_batch=1, inline_below=0.0))
    for i in range(21):  # one warm-up run (not timed), then two rounds of nine quick and one slow
        s.submit({"input": rows(1, i)}).result(5)
    assert s.service_time(0.9) >= 0.06
    assert s.service_time() < 0.04  # the mean: most runs are quick
    assert s.service_time(0.5) < 0.03
    assert s.estimated_wait(0.9) == 0.0  # nothing queued or running
    s.stop()
