"""Build a TensorRT engine from a bundle's ONNX model and ``build_spec.json``, on the GPU that will
run it.

Engines are specific to the GPU and the TensorRT version, so they are built where they run (on
the device at install, or on a GPU build host of the same kind) and cached under a key of
everything that changes the result: sha256 of the model, GPU name, compute capability, TensorRT
version, and sha256 of the spec. A timing cache per GPU and TensorRT version (named by the spec's
``timing_cache`` rule) makes later builds of other models faster. Both files are written
atomically, so a power cut mid-build leaves the previous state.

``tensorrt`` (and ``torch`` or ``cuda-python``, for the GPU's identity) are imported inside the
functions: a device without them can still import this module and report why.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.durable import atomic_write
from agent.runtimes.base import RuntimeLoadError, RuntimeUnavailable
from agent.runtimes.bundle_dir import sha256_file

NOT_INSTALLED = (
    "tensorrt is not installed (it ships with JetPack on Jetson; the PyPI package needs NVIDIA's index)"
)
NO_GPU = "no CUDA GPU"
DEFAULT_TIMING_CACHE = "timing-{gpu}-sm{compute_capability}-trt{tensorrt_version}.cache"


@dataclass(frozen=True)
class GpuIdentity:
    name: str
    compute_capability: str  # "8.7"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "gpu"


def _gpu_via_torch() -> GpuIdentity | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return GpuIdentity(torch.cuda.get_device_name(0), f"{major}.{minor}")


def _gpu_via_cuda_python() -> GpuIdentity | None:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return None
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return None
    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        return None
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return GpuIdentity(name.rstrip("\x00"), f"{props.major}.{props.minor}")


def gpu_identity() -> GpuIdentity:
    """The first CUDA GPU's name and compute capability, through torch or cuda-python.

    Raises :class:`RuntimeUnavailable` (:data:`NO_GPU`) when neither finds one.
    """
    for probe in (_gpu_via_torch, _gpu_via_cuda_python):
        found = probe()
        if found is not None:
            return found
    raise RuntimeUnavailable(f"{NO_GPU} (found none through torch or cuda-python)")


def tensorrt_version() -> str:
    """The installed TensorRT's version. Raises :class:`RuntimeUnavailable` without it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeUnavailable(NOT_INSTALLED) from exc
    return str(trt.__version__)


def engine_key(model_sha256: str, gpu: GpuIdentity, trt_version: str, spec: dict[str, Any]) -> str:
    """The cache key of an engine (pure): any change of model, GPU, TensorRT or spec changes it."""
    spec_sha = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    text = "\n".join([model_sha256, gpu.name, gpu.compute_capability, trt_version, spec_sha])
    return hashlib.sha256(text.encode()).hexdigest()


def timing_cache_name(spec: dict[str, Any], gpu: GpuIdentity, trt_version: str) -> str:
    """The timing-cache file name from the spec's rule (one cache per GPU kind and TensorRT)."""
    rule = str(spec.get("timing_cache") or DEFAULT_TIMING_CACHE)
    return rule.format(
        gpu=gpu.slug, compute_capability=gpu.compute_capability.replace(".", ""), tensorrt_version=trt_version
    )


def build_engine(onnx_path: Path, spec: dict[str, Any], cache_dir: Path) -> Path:
    """The engine for ``onnx_path`` built as ``spec`` says, from ``cache_dir`` when already built.

    Raises :class:`RuntimeUnavailable` (no TensorRT or GPU here) or :class:`RuntimeLoadError`
    (the parser or the builder refused the model; the message carries TensorRT's errors).
    """
    trt_version = tensorrt_version()
    gpu = gpu_identity()
    engine_path = cache_dir / f"{engine_key(sha256_file(onnx_path), gpu, trt_version, spec)}.engine"
    if engine_path.is_file():
        return engine_path
    timing_path = cache_dir / timing_cache_name(spec, gpu, trt_version)
    engine, timing = _build(onnx_path, spec, timing_path.read_bytes() if timing_path.is_file() else b"")
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(engine_path, engine)
    if timing:
        timing_path.parent.mkdir(parents=True, exist_ok=True)  # the spec's rule may name a subfolder
        atomic_write(timing_path, timing)
    return engine_path


def _build(onnx_path: Path, spec: dict[str, Any], timing_cache: bytes) -> tuple[bytes, bytes]:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch (the flag is deprecated there).
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeLoadError(f"{onnx_path.name}: TensorRT's ONNX parser refused it: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.get("workspace_mib", 1024)) << 20)
    for flag in spec.get("flags", []):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for shapes in spec.get("optimization_profiles", []):
        profile = builder.create_optimization_profile()
        for name, dims in shapes.items():
            profile.set_shape(name, dims["min"], dims["opt"], dims["max"])
        config.add_optimization_profile(profile)
    dla = spec.get("dla")
    if dla and builder.num_DLA_cores > 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla.get("core", 0))
        if dla.get("gpu_fallback", True):
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    try:
        cache = config.create_timing_cache(timing_cache)
    except Exception:  # a damaged cache file only costs time: start an empty one
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeLoadError(f"{onnx_path.name}: TensorRT could not build an engine (see the TensorRT log)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())
