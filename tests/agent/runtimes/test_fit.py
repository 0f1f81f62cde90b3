"""Threads fitted to a model at load: a small model keeps one thread when that is faster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from agent.contracts.manifest import Manifest
from agent.runtimes import load_bundle
from agent.runtimes.base import RuntimeAdapter
from agent.runtimes.fit import FIT_BELOW, fit_threads
from tests.agent.runtimes.test_runtime_onnxrt import _manifest, _model

FEED = {"x": np.zeros((1, 3), np.float32)}


class Fake(RuntimeAdapter):
    name = "fake"

    def __init__(self, threads: int, fails: bool = False) -> None:
        super().__init__(Path("."), _manifest())
        self.threads, self.fails, self.closed = threads, fails, False

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def version(cls) -> str | None:
        return "1"

    @classmethod
    def load(
        cls, bundle_dir: Path, manifest: Manifest, threads: int | None = None, spinning: bool | None = None
    ) -> Fake:
        raise NotImplementedError

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.fails:
            raise ValueError("inference failed: bad input")
        return {"y": np.zeros((1, 2), np.float32)}

    def close(self) -> None:
        self.closed = True


def timed(seconds: dict[int, float]) -> Callable[[RuntimeAdapter, dict[str, np.ndarray]], float]:
    def timer(adapter: RuntimeAdapter, feed: dict[str, np.ndarray]) -> float:
        adapter.infer(feed)
        return seconds[adapter.threads]  # type: ignore[attr-defined]

    return timer


def test_a_small_model_faster_on_one_thread_keeps_one_and_the_other_copy_is_closed() -> None:
    many = Fake(2)
    loads: list[int] = []

    def reload(n: int) -> RuntimeAdapter:
        loads.append(n)
        return Fake(n)

    got, n = fit_threads(many, 2, reload, FEED, timer=timed({2: 0.0001, 1: 0.00006}))
    assert n == 1 and got.threads == 1 and loads == [1]  # type: ignore[attr-defined]
    assert many.closed and not got.closed  # type: ignore[attr-defined]


def test_a_small_model_no_faster_on_one_thread_keeps_all() -> None:
    many, single = Fake(2), Fake(1)
    got, n = fit_threads(many, 2, lambda _n: single, FEED, timer=timed({2: 0.0001, 1: 0.000095}))
    assert got is many and n == 2 and single.closed and not many.closed


def test_a_model_over_the_threshold_is_not_loaded_twice() -> None:
    def reload(_n: int) -> RuntimeAdapter:
        raise AssertionError("no second load for a model that takes over FIT_BELOW")

    many = Fake(2)
    assert fit_threads(many, 2, reload, FEED, timer=timed({2: FIT_BELOW * 2})) == (many, 2)


@pytest.mark.parametrize("what", ["probe", "reload", "single probe"])
def test_any_failure_keeps_the_first_load(what: str) -> None:
    many = Fake(2, fails=what == "probe")

    def reload(n: int) -> RuntimeAdapter:
        if what == "reload":
            raise RuntimeError("out of memory")
        return Fake(n, fails=what == "single probe")

    got, n = fit_threads(many, 2, reload, FEED, timer=timed({2: 0.0001, 1: 0.00001}))
    assert got is many and n == 2 and not many.closed


def test_a_runtime_that_ignores_threads_is_not_loaded_twice() -> None:
    class OnTheGpu(Fake):
        uses_threads = False

    def reload(_n: int) -> RuntimeAdapter:
        raise AssertionError("no second engine load")

    gpu = OnTheGpu(2)
    assert fit_threads(gpu, 2, reload, FEED, timer=timed({2: 0.0001})) == (gpu, 2)


def test_one_thread_asked_for_is_left_alone() -> None:
    one = Fake(1)
    assert fit_threads(one, 1, lambda _n: Fake(1), FEED) == (one, 1)


def test_a_real_small_model_ends_on_one_of_its_two_loads_and_the_other_is_closed(tmp_path: Path) -> None:
    # Real ONNX Runtime: which copy wins is the machine's to say; that exactly one stays open and
    # answers is not.
    _model(tmp_path / "model.onnx")
    man = _manifest()
    loaded: list[RuntimeAdapter] = []

    def reload(n: int) -> RuntimeAdapter:
        a = load_bundle(tmp_path, man, threads=n)
        loaded.append(a)
        return a

    first = reload(2)
    got, n = fit_threads(first, 2, reload, {"x": np.ones((1, 3), np.float32)})
    assert len(loaded) == 2  # a MatMul of 3x2 runs far under FIT_BELOW: the one-thread copy was timed
    assert got is loaded[0 if n == 2 else 1]
    other = loaded[1 if n == 2 else 0]
    assert other._session is None and got._session is not None  # type: ignore[attr-defined]
    np.testing.assert_allclose(got.infer({"x": np.ones((1, 3), np.float32)})["y"], [[1.5, 2.0]])
