"""LiteRTAdapter: tensor mapping (NCHW ⇄ NHWC, int8), dynamic batches, chunked runs, and errors.

Most tests run against a small stand-in interpreter (the LiteRT ``Interpreter`` surface the
adapter uses), so they need no ``.tflite`` file; a real conversion is run through the adapter in
``tests/compilers/test_tflite_arm.py``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.contracts.manifest import FileEntry, Manifest, Quantization, TensorSpec
from agent.runtimes import RuntimeLoadError, RuntimeUnavailable, get_runtime, litert
from agent.runtimes.litert import LiteRTAdapter

ENTRY = "model.tflite"


class FakeInterpreter:
    """Doubles its one NHWC input. ``resizable=False`` behaves like a model with its batch size
    baked in: resizing works, but allocating the new size fails."""

    instances: list[FakeInterpreter] = []

    def __init__(
        self,
        model_path: str,
        num_threads: int | None = None,
        *,
        shape: tuple[int, ...] = (1, 2, 2, 3),
        dtype: Any = np.int8,
        resizable: bool = True,
    ) -> None:
        self.model_path, self.num_threads = model_path, num_threads
        self.dtype, self.resizable = dtype, resizable
        self.fixed = shape
        self.shape = shape
        self.pending: tuple[int, ...] | None = None
        self.invokes: list[tuple[int, ...]] = []
        self.allocations = 0
        self.value: np.ndarray | None = None
        FakeInterpreter.instances.append(self)

    def _detail(self, name: str, index: int, scale: float) -> dict[str, Any]:
        return {
            "name": name,
            "index": index,
            "shape": np.array(self.shape),
            "shape_signature": np.array((-1, *self.fixed[1:])),
            "dtype": self.dtype,
            "quantization": (scale, 0) if self.dtype == np.int8 else (0.0, 0),
        }

    def get_input_details(self) -> list[dict[str, Any]]:
        return [self._detail("serving_default_x:0", 0, 0.1)]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [self._detail("PartitionedCall:0", 7, 0.2)]

    def resize_tensor_input(self, index: int, shape: list[int], strict: bool = False) -> None:
        self.pending = tuple(shape)

    def allocate_tensors(self) -> None:
        if self.pending is not None:
            shape, self.pending = self.pending, None
            if not self.resizable and shape != self.fixed:
                raise RuntimeError("tensor reshape failed: node Reshape expects a batch of 1")
            self.shape = shape
        self.allocations += 1

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        assert index == 0
        if value.dtype != self.dtype:
            raise ValueError(f"got {value.dtype}, want {self.dtype}")
        if tuple(value.shape) != self.shape:
            raise ValueError(f"got shape {value.shape}, want {self.shape}")
        self.value = value.copy()

    def invoke(self) -> None:
        assert self.value is not None
        self.invokes.append(tuple(self.value.shape))

    def get_tensor(self, index: int) -> np.ndarray:
        assert index == 7 and self.value is not None
        # y = 2x; with output scale 2x the input's, the int8 codes are the same.
        return self.value.copy() if self.dtype == np.int8 else self.value * 2


def manifest(int8: bool = True, model_name: str | None = "serving_default_x:0") -> Manifest:
    def spec(name: str, mname: str | None, scale: float) -> TensorSpec:
        return TensorSpec(
            name=name,
            dtype="float32",
            shape=(-1, 3, 2, 2),
            model_name=mname,
            model_shape=(-1, 2, 2, 3),
            transpose=(0, 2, 3, 1),
            quantization=Quantization(scale, 0, "int8") if int8 else None,
        )

    return Manifest(
        target="tflite-arm",
        precision="int8" if int8 else "fp32",
        runtime="litert",
        runtime_version=">=1.2",
        entrypoint=ENTRY,
        source_sha256="0" * 64,
        inputs=(spec("x", model_name, 0.1),),
        outputs=(spec("y", "PartitionedCall:0", 0.2),),
        files=(FileEntry(ENTRY, "0" * 64, 1),),
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / ENTRY).write_bytes(b"not read by the fake")
    return tmp_path


def use_fake(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> None:
    FakeInterpreter.instances.clear()
    monkeypatch.setattr(litert, "_backend", lambda: (lambda **kw: FakeInterpreter(**kw, **kwargs), "fake"))


def sample(n: int) -> np.ndarray:
    # multiples of the input scale, within int8 range, so quantization is exact
    rng = np.random.default_rng(n)
    return (rng.integers(-60, 60, size=(n, 3, 2, 2)) * 0.1).astype(np.float32)


def test_registered_as_litert() -> None:
    assert get_runtime("litert") is LiteRTAdapter


def test_source_layout_in_and_out_with_int8(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    use_fake(monkeypatch)
    adapter = LiteRTAdapter.load(bundle, manifest(), threads=2)
    fake = FakeInterpreter.instances[-1]
    assert fake.num_threads == 2
    x = sample(1)
    y = adapter.infer({"x": x})["y"]
    assert y.shape == (1, 3, 2, 2) and y.dtype == np.float32
    np.testing.assert_allclose(y, 2 * x, atol=1e-5)
    # what reached the model was NHWC int8 codes
    assert fake.value is not None and fake.value.dtype == np.int8
    np.testing.assert_array_equal(fake.value, np.round(x.transpose(0, 2, 3, 1) / 0.1).astype(np.int8))


def test_float_model_needs_no_quantization(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    use_fake(monkeypatch, dtype=np.float32)
    adapter = LiteRTAdapter.load(bundle, manifest(int8=False))
    x = np.random.default_rng(0).normal(size=(1, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(adapter.infer({"x": x})["y"], 2 * x, rtol=1e-6)


def test_dynamic_batch_resizes_once_per_size(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    use_fake(monkeypatch)
    adapter = LiteRTAdapter.load(bundle, manifest())
    fake = FakeInterpreter.instances[-1]
    x = sample(5)
    np.testing.assert_allclose(adapter.infer({"x": x})["y"], 2 * x, atol=1e-5)
    allocations = fake.allocations
    adapter.infer({"x": sample(5)})
    assert fake.allocations == allocations  # same size: no new allocation
    assert fake.invokes == [(5, 2, 2, 3), (5, 2, 2, 3)]


def test_fixed_batch_model_runs_in_chunks(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    use_fake(monkeypatch, shape=(2, 2, 2, 3), resizable=False)
    adapter = LiteRTAdapter.load(bundle, manifest())
    fake = FakeInterpreter.instances[-1]
    x = sample(5)
    y = adapter.infer({"x": x})["y"]
    np.testing.assert_allclose(y, 2 * x, atol=1e-5)
    assert y.shape == (5, 3, 2, 2)
    assert fake.invokes == [(2, 2, 2, 3)] * 3  # 5 rows in chunks of 2, the last one padded


def test_binds_by_model_name_else_position(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    use_fake(monkeypatch)
    adapter = LiteRTAdapter.load(bundle, manifest(model_name="renamed-by-a-newer-converter"))
    np.testing.assert_allclose(adapter.infer({"x": sample(1)})["y"], 2 * sample(1), atol=1e-5)


def test_bad_inputs_are_value_errors(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    use_fake(monkeypatch)
    adapter = LiteRTAdapter.load(bundle, manifest())
    with pytest.raises(ValueError, match="missing input"):
        adapter.infer({})
    with pytest.raises(ValueError, match="dim 1 must be 3"):
        adapter.infer({"x": np.zeros((1, 2, 2, 3), np.float32)})


def test_missing_file_is_a_load_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_fake(monkeypatch)
    with pytest.raises(RuntimeLoadError, match="no such model file"):
        LiteRTAdapter.load(tmp_path, manifest())


def test_count_mismatch_is_a_load_error(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    use_fake(monkeypatch)
    m = manifest()
    two = replace(m, inputs=m.inputs * 2)
    with pytest.raises(RuntimeLoadError, match="2 input"):
        LiteRTAdapter.load(bundle, two)


def test_without_litert(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    monkeypatch.setattr(litert, "_backend", lambda: None)
    reason = LiteRTAdapter.unavailable_reason()
    assert reason is not None and "edgefleet[tflite]" in reason and "ai-edge-litert" in reason
    assert LiteRTAdapter.version() is None
    assert litert.interpreter_class() is None
    with pytest.raises(RuntimeUnavailable):
        LiteRTAdapter.load(bundle, manifest())


def test_real_litert_refuses_a_corrupt_file(bundle: Path) -> None:
    pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")
    (bundle / ENTRY).write_bytes(b"\x00" * 64)
    assert LiteRTAdapter.unavailable_reason() is None
    assert LiteRTAdapter.version()
    with pytest.raises(RuntimeLoadError, match="LiteRT can't load it"):
        LiteRTAdapter.load(bundle, manifest())
