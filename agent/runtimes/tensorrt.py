"""TensorRT adapter: runs ``tensorrt-jetson`` bundles.

The bundle holds an ONNX model and ``build_spec.json``; :meth:`TensorRTAdapter.load` builds the
engine for this GPU (or takes it from the engine cache) with
:func:`agent.runtimes.tensorrt_build.build_engine`, then runs it with TensorRT's named-tensor API
(``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``, TensorRT 8.5 and later).
Device memory comes from ``torch`` when it is installed (JetPack images usually have it), else
from ``cuda-python``. All of these are imported inside functions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agent.contracts.manifest import Manifest
from agent.runtimes.base import RuntimeAdapter, RuntimeLoadError, RuntimeUnavailable
from agent.runtimes.tensorrt_build import NOT_INSTALLED, build_engine, gpu_identity
from agent.runtimes.tensors import check_input, from_model, to_model

CACHE_ENV = "EDGEFLEET_TRT_CACHE"
SPEC_ROLE = "build-spec"


def engine_cache_dir() -> Path:
    """Where engines and timing caches live: ``$EDGEFLEET_TRT_CACHE`` or ``~/.cache/edgefleet/tensorrt``.
    Outside the bundle slots, so a reinstall of the same model on the same GPU reuses its engine."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "edgefleet" / "tensorrt"


class _Buffer:
    """A device allocation with its pointer; ``keep`` holds whatever owns the memory."""

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype, keep: Any) -> None:
        self.ptr, self.shape, self.dtype, self.keep = ptr, shape, dtype, keep


class _TorchMemory:
    def __init__(self) -> None:
        import torch

        self._torch = torch
        self.stream = torch.cuda.current_stream()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def upload(self, arr: np.ndarray) -> _Buffer:
        t = self._torch.from_numpy(np.ascontiguousarray(arr)).cuda()
        return _Buffer(int(t.data_ptr()), arr.shape, arr.dtype, t)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> _Buffer:
        proto = self._torch.from_numpy(np.empty(0, dtype=dtype))
        t = self._torch.empty(shape, dtype=proto.dtype, device="cuda")
        return _Buffer(int(t.data_ptr()), shape, dtype, t)

    def download(self, buf: _Buffer) -> np.ndarray:
        return np.asarray(buf.keep.cpu().numpy())

    def sync(self) -> None:
        self.stream.synchronize()

    def free(self, buf: _Buffer) -> None:
        buf.keep = None

    def close(self) -> None:
        pass  # torch owns its current stream


class _CudaPythonMemory:
    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self._rt = cudart
        self._stream = self._check(cudart.cudaStreamCreate())

    def _check(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def _alloc(self, shape: tuple[int, ...], dtype: np.dtype) -> _Buffer:
        nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
        return _Buffer(int(self._check(self._rt.cudaMalloc(nbytes))), shape, dtype, None)

    def upload(self, arr: np.ndarray) -> _Buffer:
        arr = np.ascontiguousarray(arr)
        buf = self._alloc(arr.shape, arr.dtype)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(buf.ptr, arr.ctypes.data, arr.nbytes, kind, self._stream))
        buf.keep = arr  # the host copy must live until the stream has read it
        return buf

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> _Buffer:
        return self._alloc(shape, dtype)

    def download(self, buf: _Buffer) -> np.ndarray:
        host = np.empty(buf.shape, dtype=buf.dtype)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(host.ctypes.data, buf.ptr, host.nbytes, kind, self._stream))
        self.sync()
        return host

    def sync(self) -> None:
        self._check(self._rt.cudaStreamSynchronize(self._stream))

    def free(self, buf: _Buffer) -> None:
        self._check(self._rt.cudaFree(buf.ptr))

    def close(self) -> None:
        """Destroy the stream; the memory object is unusable afterwards. Idempotent."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            self._check(self._rt.cudaStreamDestroy(stream))


def _device_memory() -> _TorchMemory | _CudaPythonMemory:
    # torch is optional on a Jetson: when it is missing, cuda-python does the allocations.
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return _TorchMemory()
    try:
        return _CudaPythonMemory()
    except ImportError as exc:
        raise RuntimeUnavailable(
            "TensorRT needs torch (CUDA build) or cuda-python for device memory"
        ) from exc


def read_build_spec(bundle_dir: Path, manifest: Manifest) -> dict[str, Any]:
    """The bundle's build spec (the file with role ``build-spec``). Raises :class:`RuntimeLoadError`."""
    entry = next((f for f in manifest.files if f.role == SPEC_ROLE), None)
    if entry is None:
        raise RuntimeLoadError("the bundle has no build-spec file for TensorRT")
    try:
        spec = json.loads((bundle_dir / entry.path).read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeLoadError(f"{entry.path}: unreadable build spec: {exc}") from exc
    if not isinstance(spec, dict):
        raise RuntimeLoadError(f"{entry.path}: the build spec is not a JSON object")
    return spec


class TensorRTAdapter(RuntimeAdapter):
    """One engine, one execution context, one stream.

    An execution context holds per-inference state (input shapes, tensor addresses) and every
    call shares the memory object's one stream, so :meth:`infer` runs one call at a time under
    ``_lock``: the serving layer calls it from several threads at once.
    """

    name: ClassVar[str] = "tensorrt"
    uses_threads: ClassVar[bool] = False  # the engine runs on the GPU

    def __init__(self, bundle_dir: Path, manifest: Manifest, engine: Any, context: Any, memory: Any) -> None:
        super().__init__(bundle_dir, manifest)
        self._engine, self._context, self._memory = engine, context, memory
        self._lock = threading.Lock()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return NOT_INSTALLED
        try:
            gpu_identity()
        except RuntimeUnavailable as exc:
            return str(exc)
        return None

    @classmethod
    def version(cls) -> str | None:
        try:
            import tensorrt as trt
        except ImportError:
            return None
        return str(trt.__version__)

    @classmethod
    def load(
        cls, bundle_dir: Path, manifest: Manifest, threads: int | None = None, spinning: bool | None = None
    ) -> TensorRTAdapter:
        """Build (or reuse) the engine for this GPU and open an execution context.

        ``threads`` does not apply to a GPU runtime. Raises :class:`RuntimeUnavailable` or
        :class:`RuntimeLoadError`.
        """
        reason = cls.unavailable_reason()
        if reason:
            raise RuntimeUnavailable(reason)
        import tensorrt as trt

        spec = read_build_spec(bundle_dir, manifest)
        engine_path = build_engine(bundle_dir / manifest.entrypoint, spec, engine_cache_dir())
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise RuntimeLoadError(f"{engine_path.name}: TensorRT could not deserialize the engine")
        context = engine.create_execution_context()
        if context is None:
            raise RuntimeLoadError(f"{engine_path.name}: could not create an execution context (GPU memory?)")
        return cls(bundle_dir, manifest, engine, context, _device_memory())

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch on the GPU. Raises ``ValueError`` for bad inputs, ``RuntimeError`` when
        TensorRT fails to enqueue. Thread-safe: concurrent calls run one after the other."""
        import tensorrt as trt

        with self._lock:
            return self._infer_locked(trt, inputs)

    def _infer_locked(self, trt: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        buffers: list[_Buffer] = []
        try:
            for spec in self.manifest.inputs:
                if spec.name not in inputs:
                    raise ValueError(f"input {spec.name!r} is missing")
                arr = to_model(spec, check_input(spec, inputs[spec.name]))
                name = spec.model_name or spec.name
                if not self._context.set_input_shape(name, arr.shape):
                    raise ValueError(
                        f"input {spec.name!r}: shape {list(arr.shape)} is outside the engine's profile"
                    )
                buf = self._memory.upload(arr)
                buffers.append(buf)
                self._context.set_tensor_address(name, buf.ptr)
            outs = []
            for spec in self.manifest.outputs:
                name = spec.model_name or spec.name
                shape = tuple(self._context.get_tensor_shape(name))
                dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
                buf = self._memory.empty(shape, dtype)
                buffers.append(buf)
                outs.append((spec, buf))
                self._context.set_tensor_address(name, buf.ptr)
            if not self._context.execute_async_v3(self._memory.stream_handle):
                raise RuntimeError("TensorRT failed to enqueue the inference")
            self._memory.sync()
            return {spec.name: from_model(spec, self._memory.download(buf)) for spec, buf in outs}
        finally:
            for buf in buffers:
                self._memory.free(buf)

    def close(self) -> None:
        # Under the lock, so an inference still running finishes before its context goes away.
        with self._lock:
            self._context = None
            self._engine = None
            memory, self._memory = self._memory, None
            if memory is not None:
                memory.close()
