"""The TensorRT adapter without a GPU: a fake execution context and device memory that behave like
TensorRT's named-tensor API (per-context shapes and addresses, one stream), and a fake
``cuda-python`` for the stream's life cycle. Real engines are tested on a Jetson."""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.contracts.manifest import Manifest, TensorSpec
from agent.runtimes.tensorrt import TensorRTAdapter, _Buffer, _CudaPythonMemory


class FakeMemory:
    """Device memory as a dict of pointer → array; ``stream_handle`` is a constant."""

    stream_handle = 7

    def __init__(self) -> None:
        self.arrays: dict[int, np.ndarray] = {}
        self._next = 0x1000
        self._alloc_lock = threading.Lock()
        self.closed = 0

    def _alloc(self, arr: np.ndarray) -> _Buffer:
        with self._alloc_lock:
            ptr, self._next = self._next, self._next + 0x1000
        self.arrays[ptr] = arr
        return _Buffer(ptr, arr.shape, arr.dtype, None)

    def upload(self, arr: np.ndarray) -> _Buffer:
        return self._alloc(np.array(arr))

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> _Buffer:
        return self._alloc(np.zeros(shape, dtype))

    def download(self, buf: _Buffer) -> np.ndarray:
        return self.arrays[buf.ptr].copy()

    def sync(self) -> None:
        pass

    def free(self, buf: _Buffer) -> None:
        self.arrays.pop(buf.ptr, None)

    def close(self) -> None:
        self.closed += 1


class FakeContext:
    """One IExecutionContext: input shape and tensor addresses are state of the context, as in
    TensorRT. ``execute_async_v3`` computes ``y = 2 * x`` from whatever addresses are set when it
    runs, and notes how many calls were inside it at once."""

    def __init__(self, memory: FakeMemory) -> None:
        self.memory = memory
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.inside = 0
        self.most_inside = 0
        self._count_lock = threading.Lock()

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = tuple(shape)
        time.sleep(0.001)  # give another thread the chance to step in between the calls
        return True

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.addresses[name] = ptr

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes["x"]

    def execute_async_v3(self, stream: int) -> bool:
        with self._count_lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(0.002)
            x = self.memory.arrays[self.addresses["x"]]
            self.memory.arrays[self.addresses["y"]][...] = 2 * x
            return True
        finally:
            with self._count_lock:
                self.inside -= 1


class FakeEngine:
    def get_tensor_dtype(self, name: str) -> str:
        return "float32"


@pytest.fixture
def fake_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import tensorrt`` inside ``infer`` finds this; ``nptype`` maps a dtype as TensorRT's does."""
    trt = types.ModuleType("tensorrt")
    trt.nptype = np.dtype  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", trt)


def adapter(memory: FakeMemory) -> tuple[TensorRTAdapter, FakeContext]:
    spec_x = TensorSpec("x", "float32", (-1, 4))
    spec_y = TensorSpec("y", "float32", (-1, 4))
    manifest = Manifest(
        target="tensorrt-jetson",
        precision="fp16",
        runtime="tensorrt",
        runtime_version="10",
        entrypoint="model.onnx",
        source_sha256="0" * 64,
        inputs=(spec_x,),
        outputs=(spec_y,),
        files=(),
    )
    context = FakeContext(memory)
    return TensorRTAdapter(Path("."), manifest, FakeEngine(), context, memory), context


@pytest.mark.usefixtures("fake_tensorrt")
def test_concurrent_infers_use_the_context_one_at_a_time() -> None:
    memory = FakeMemory()
    trt, context = adapter(memory)
    errors: list[str] = []
    start = threading.Barrier(8)

    def client(i: int) -> None:
        start.wait()
        for j in range(10):
            x = np.full((i + 1, 4), float(i * 100 + j), np.float32)
            y = trt.infer({"x": x})["y"]
            if y.shape != x.shape or not np.array_equal(y, 2 * x):
                errors.append(f"client {i} call {j}: got another request's result {y.ravel()[:1]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert context.most_inside == 1
    assert memory.arrays == {}  # every buffer freed


@pytest.mark.usefixtures("fake_tensorrt")
def test_close_waits_for_a_running_infer_and_closes_the_memory() -> None:
    memory = FakeMemory()
    trt, context = adapter(memory)
    entered = threading.Event()
    real_execute = context.execute_async_v3

    def slow_execute(stream: int) -> bool:
        entered.set()
        time.sleep(0.05)
        return real_execute(stream)

    context.execute_async_v3 = slow_execute  # type: ignore[method-assign]
    result: dict[str, np.ndarray] = {}
    t = threading.Thread(target=lambda: result.update(trt.infer({"x": np.ones((1, 4), np.float32)})))
    t.start()
    assert entered.wait(5)
    trt.close()
    t.join()
    np.testing.assert_array_equal(result["y"], np.full((1, 4), 2, np.float32))
    assert memory.closed == 1
    trt.close()  # a second close is harmless
    assert memory.closed == 1


def test_cuda_python_memory_destroys_its_stream_on_close(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    rt = types.ModuleType("cuda.bindings.runtime")

    def create() -> tuple[int, int]:
        calls.append(("create", None))
        return (0, 4242)

    def destroy(stream: int) -> tuple[int]:
        calls.append(("destroy", stream))
        return (0,)

    rt.cudaStreamCreate = create  # type: ignore[attr-defined]
    rt.cudaStreamDestroy = destroy  # type: ignore[attr-defined]
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = rt  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)

    memory = _CudaPythonMemory()
    assert memory.stream_handle == 4242
    memory.close()
    memory.close()
    assert calls == [("create", None), ("destroy", 4242)]
