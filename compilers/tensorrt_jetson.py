"""Target ``tensorrt-jetson``: an ONNX model TensorRT builds an engine from, plus the build spec.

Engines do not move between GPUs or TensorRT versions, so the bundle carries no engine: the
device (or a GPU build host with the same JetPack) builds it with
:func:`agent.runtimes.tensorrt_build.build_engine`, following ``build_spec.json``.

* int8: explicit quantization. A QDQ model quantized the way TensorRT wants it: INT8 weights and
  activations, symmetric (zero points of 0; TensorRT refuses others), per-channel weights, and
  FP32 biases (TensorRT's parser dequantizes only INT8 tensors, not INT32 biases). Q/DQ sit on
  the inputs of weighted layers only (:data:`WEIGHTED_OPS`), not on their outputs, as
  TensorRT's guide to explicit quantization places them: its fusions carry INT8 through the
  activations and pooling after a convolution where they can, and the rest (normalisation,
  softmax, element-wise joins of unlike ranges, an attention mask's ``finfo.min``) runs in
  FP16, where one INT8 scale per tensor had cost most accuracy (Magika: top-1 0.00-0.48 against
  FP32 with Q/DQ on every op, 1.00 with them on its weighted layers only). Layers without Q/DQ
  run in FP16 (the spec enables both flags).
* int8, mixed: the layers named in ``job.options["float_nodes"]`` lose the Q/DQ pairs on their
  inputs (:func:`compilers.mixed.strip_qdq`, with their FP32 weights back), so TensorRT runs
  them in FP16. Calibration: MinMax (default), Entropy or Percentile (ONNX Runtime's calibrators,
  symmetric ranges).
* fp16 / fp32: the source model, optimised by nothing: TensorRT does its own fusions and the
  FP16 cast.

On a host without TensorRT and a GPU the bundle is checked with the QDQ model under ONNX Runtime
with only basic graph optimisation, so Q/DQ pairs are computed as float math, which is what
TensorRT's INT8 kernels compute (exact INT32 accumulation), rather than by ONNX Runtime's x86
INT8 kernels, whose u8s8 saturation TensorRT does not have.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import onnx

from agent.contracts.manifest import TensorSpec
from agent.runtimes import unavailable_reason
from compilers import mixed, ort_tools
from compilers.base import CompileJob, Target, TargetOutput
from compilers.errors import CalibrationError, TargetError, UnsupportedOpError
from compilers.mixed import LayerCost
from compilers.modelcheck import iter_nodes, node_label
from device_profiles import DeviceProfile

MODEL_FILE = "model.onnx"
SPEC_FILE = "build_spec.json"
SPEC_SCHEMA = "edgefleet.tensorrt-build/1"
DEFAULT_MAX_BATCH = 8

# Ops TensorRT's ONNX parser can't import, from the onnx-tensorrt operator support matrix
# (docs/operators.md, TensorRT 8.4 to 10.x): those marked "N" that no release in the profiles'
# ranges (>=8.5) added. Conservative on purpose: an op missing here fails at engine build on the
# device instead (and the agent rolls back), an op wrongly listed would block a good model.
UNSUPPORTED_OPS = frozenset(
    {
        "BitShift",
        "Compress",
        "ConcatFromSequence",
        "ConvInteger",
        "Det",
        "DynamicQuantizeLinear",
        "ImageDecoder",
        "MatMulInteger",
        "MaxRoiPool",
        "MaxUnpool",
        "Multinomial",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "QLinearConv",
        "QLinearMatMul",
        "RegexFullMatch",
        "SequenceAt",
        "SequenceConstruct",
        "SequenceEmpty",
        "SequenceErase",
        "SequenceInsert",
        "SequenceLength",
        "SequenceMap",
        "SplitToSequence",
        "StringConcat",
        "StringNormalizer",
        "StringSplit",
        "TfIdfVectorizer",
        "Unique",
    }
)
_ONNX_DOMAINS = ("", "ai.onnx")

# The op types whose inputs are quantized: those with weights, and the matrix products of two
# activations (attention), which is where INT8 pays on TensorRT.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")

# Workspace: an eighth of the (shared CPU/GPU) memory, within [256 MiB, 4 GiB]. Enough for the
# tactics of edge-sized CNNs without starving the rest of the device; TensorRT takes less when
# it can.
_WORKSPACE_SHARE = 8
_WORKSPACE_MIN_MIB = 256
_WORKSPACE_MAX_MIB = 4096

TIMING_CACHE_RULE = "timing-{gpu}-sm{compute_capability}-trt{tensorrt_version}.cache"
ENGINE_KEY_RULE = "sha256(model) + GPU name + compute capability + TensorRT version + sha256(build spec)"


class TensorRTJetsonTarget(Target):
    name: ClassVar[str] = "tensorrt-jetson"
    runtime: ClassVar[str] = "tensorrt"
    precisions: ClassVar[tuple[str, ...]] = ("int8", "fp16", "fp32")
    calibration_methods: ClassVar[tuple[str, ...]] = ("MinMax", "Entropy", "Percentile")

    def check_ops(self, model: Any) -> None:
        """Refuse ops TensorRT's ONNX parser can't import (:data:`UNSUPPORTED_OPS`) and ops from
        any domain but the default ONNX one (``ai.onnx.ml`` included; custom ops need a
        plugin built for the device)."""
        for i, node in enumerate(iter_nodes(model.graph)):
            if node.domain not in _ONNX_DOMAINS:
                raise UnsupportedOpError(
                    self.name,
                    f"{node.domain}.{node.op_type}",
                    node_label(node, i),
                    "TensorRT's ONNX parser imports only the default ONNX domain (custom ops need a plugin)",
                )
            if node.op_type in UNSUPPORTED_OPS:
                raise UnsupportedOpError(
                    self.name,
                    node.op_type,
                    node_label(node, i),
                    "TensorRT's ONNX parser has no importer for it",
                )

    def compile(self, job: CompileJob, staging: Path) -> TargetOutput:
        """Write ``model.onnx`` (QDQ INT8, or the FP32 source) and ``build_spec.json``.

        Raises CalibrationError (INT8 without calibration data), TargetError or ToolchainError.
        """
        out = staging / MODEL_FILE
        notes: list[str] = []
        build: dict[str, Any] = {"onnxruntime_tools": ort_tools.ort_version()}
        if job.precision == "int8":
            if job.calibration is None:
                raise CalibrationError(
                    f"target {self.name} needs calibration data for INT8 "
                    "(--calibration: .npz, .npy or an image folder)"
                )
            method = job.options.get("calibration_method") or self.calibration_methods[0]
            settings = ort_tools.QdqSettings(
                activation_type="QInt8",
                symmetric=True,
                quantize_bias=False,
                calibration=method,
                op_types=WEIGHTED_OPS,
                float_outputs=WEIGHTED_OPS,
            )
            job.progress(
                f"quantizing to INT8 QDQ for TensorRT (symmetric, per-channel, {method}, "
                "the inputs of weighted layers)"
            )
            with tempfile.TemporaryDirectory(prefix="edgefleet-trt-") as work:
                pre = Path(work) / "pre.onnx"
                ort_tools.pre_process(job.source_path, pre)
                unbounded = ort_tools.quantize_qdq(pre, out, job.calibration, job.inputs, settings)
                qdq = onnx.load(str(out))
                if not ort_tools.has_qdq(qdq):
                    out.unlink()
                    raise TargetError(
                        f"INT8 for {self.name} found nothing to quantize: no {', '.join(WEIGHTED_OPS)} "
                        "layer takes Q/DQ in this model; compile with --precision fp16"
                    )
                float_nodes = tuple(job.options.get("float_nodes", ()))
                if float_nodes:
                    job.progress(f"removing Q/DQ around {len(float_nodes)} layer(s) kept in float")
                    stripped = mixed.strip_qdq(qdq, float_nodes, onnx.load(str(pre)))
                    if not ort_tools.has_qdq(stripped):
                        out.unlink()
                        raise TargetError(
                            f"INT8 for {self.name} with {len(float_nodes)} layer(s) in float leaves no "
                            "layer in INT8; compile with --precision fp16"
                        )
                    onnx.save(stripped, str(out))
            build["quantization"] = settings.to_dict()
            notes += ort_tools.non_finite_record(build["quantization"], unbounded)
            if float_nodes:
                build["quantization"]["float_layers"] = list(float_nodes)
                build["float_nodes"] = list(float_nodes)
                notes.append(
                    f"{len(float_nodes)} layer(s) kept in float (no Q/DQ around them): TensorRT runs them "
                    "in FP16 on the device; validated here in FP32"
                )
        elif job.precision in ("fp16", "fp32"):
            shutil.copyfile(job.source_path, out)
            if job.precision == "fp16":
                notes.append(
                    "FP16 is applied by TensorRT at engine build; validated here as FP32 "
                    "(the device's self-test checks FP16)"
                )
        else:
            raise TargetError(f"target {self.name} can't produce precision {job.precision!r}")
        spec = build_spec(job, MODEL_FILE)
        (staging / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        build["build_spec"] = SPEC_FILE
        return TargetOutput(
            entrypoint=MODEL_FILE,
            files={MODEL_FILE: "model", SPEC_FILE: "build-spec"},
            inputs=job.inputs,
            outputs=job.outputs,
            runtime_version=job.profile.runtime.version,
            build=build,
            runnable_here=unavailable_reason(self.runtime),
            stand_in=MODEL_FILE,
            notes=tuple(notes),
        )

    def layer_costs(self, job: CompileJob, staging: Path) -> tuple[LayerCost, ...] | None:
        """The QDQ model's layers ranked by quantization cost against FP32, computed with Q/DQ
        in float as TensorRT computes it (:func:`compilers.mixed.rank_qdq_layers`)."""
        if job.calibration is None:
            return None
        return mixed.rank_qdq_layers(job.source_path, staging / MODEL_FILE, job.calibration, job.inputs)

    def search_layers(
        self, job: CompileJob, staging: Path, ranked: tuple[LayerCost, ...], cap: int
    ) -> tuple[LayerCost, ...]:
        """The layers whose Q/DQ, removed one more at a time, bring the outputs nearest FP32
        (:func:`compilers.mixed.search_at_outputs`: removing Q/DQ is how this target keeps a
        layer in float, so each candidate is scored without quantizing again)."""
        if job.calibration is None:
            return ()
        job.progress(f"choosing up to {cap} layer(s) to keep in float by their effect at the outputs")
        qdq = staging / MODEL_FILE
        return tuple(mixed.search_at_outputs(job.source_path, qdq, job.calibration, job.inputs, ranked, cap))


def workspace_mib(profile: DeviceProfile) -> int:
    """The builder's workspace limit for ``profile`` (see ``_WORKSPACE_SHARE``)."""
    return max(_WORKSPACE_MIN_MIB, min(_WORKSPACE_MAX_MIB, profile.memory_mb // _WORKSPACE_SHARE))


def precision_flags(precision: str) -> list[str]:
    """``BuilderFlag`` names: INT8 builds also allow FP16 for layers left unquantized."""
    return {"int8": ["INT8", "FP16"], "fp16": ["FP16"], "fp32": []}[precision]


def optimization_profile(
    spec: TensorSpec, max_batch: int, calibration_shape: tuple[int, ...] | None
) -> dict[str, list[int]] | None:
    """min/opt/max shapes for one input, ``None`` when all its dims are fixed. A dynamic batch
    (dim 0) gets 1/1/``max_batch``; other dynamic dims take the calibration data's size.

    Raises :class:`TargetError` for a dynamic non-batch dim whose size nothing tells.
    """
    if all(d >= 0 for d in spec.shape):
        return None
    dims: list[tuple[int, int, int]] = []
    for i, d in enumerate(spec.shape):
        if d >= 0:
            dims.append((d, d, d))
        elif i == 0:
            dims.append((1, 1, max_batch))
        elif calibration_shape is not None:
            dims.append((calibration_shape[i],) * 3)
        else:
            raise TargetError(
                f"input {spec.name!r} dim {i} is dynamic; TensorRT needs its size: export the model with a "
                "fixed size or give calibration data of the size to build for"
            )
    return {"min": [d[0] for d in dims], "opt": [d[1] for d in dims], "max": [d[2] for d in dims]}


def build_spec(job: CompileJob, model_file: str) -> dict[str, Any]:
    """The ``build_spec.json`` that :func:`agent.runtimes.tensorrt_build.build_engine` follows."""
    profile = job.profile
    assert profile.gpu is not None  # the profile loader requires a GPU for this target
    max_batch = int(job.options.get("max_batch", DEFAULT_MAX_BATCH))
    shapes = {}
    for spec in job.inputs:
        cal = None if job.calibration is None else tuple(job.calibration[spec.name].shape)
        prof = optimization_profile(spec, max_batch, cal)
        if prof is not None:
            shapes[spec.model_name or spec.name] = prof
    dla = None
    if profile.gpu.dla_cores > 0:
        # DLA runs INT8/FP16 layers with static shapes; anything else falls back to the GPU.
        dla = {"core": 0, "cores": profile.gpu.dla_cores, "gpu_fallback": True}
    return {
        "schema": SPEC_SCHEMA,
        "model": model_file,
        "precision": job.precision,
        "flags": precision_flags(job.precision),
        "explicit_quantization": job.precision == "int8",
        "workspace_mib": workspace_mib(profile),
        "optimization_profiles": [shapes] if shapes else [],
        "dla": dla,
        "gpu": {"name": profile.gpu.name, "compute_capability": profile.gpu.compute_capability},
        "tensorrt_version": profile.runtime.version,
        "jetpack": profile.jetpack,
        "timing_cache": TIMING_CACHE_RULE,
        "engine_cache_key": ENGINE_KEY_RULE,
    }
