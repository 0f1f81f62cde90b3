"""Target ``onnx-x86``: an ONNX model for ONNX Runtime's CPU provider on x86-64.

* int8 with calibration: ``quant_pre_process``, then static QDQ quantization with per-channel
  weights (U8S8, ONNX Runtime's fast path on x86). On CPUs without VNNI the u8*s8 instruction
  (``vpmaddubsw``) saturates its 16-bit pair sums, so for profiles without VNNI the weights are
  quantized to 7 bits (``reduce_range``), as ONNX Runtime's documentation advises; on the example
  CNN that cut the mean error against FP32 eightfold. A bundle for a VNNI profile compiled on a
  host without VNNI would saturate here but not on the device, so it is validated with its Q/DQ
  computed in float (the exact integer result) and not timed (``TargetOutput.int8_in_float``): on
  the PaddleOCR classifier the host's kernels agreed with FP32 on 97.5% of samples, the device's
  arithmetic on 99.5%.
* int8 without calibration: dynamic quantization (weights only). It suits MatMul/Gemm-heavy
  models; convolutions become ``ConvInteger``, which ran about 10x slower than FP32 here.
* int8 with calibration method ``Dynamic`` (what ``auto`` tries when static INT8 and mixed
  precision failed): dynamic quantization of the matrix products, recurrent cells and embedding
  tables only, per channel; convolutions stay in float and are listed as kept in float.
  Static QDQ fails where activations' ranges move from sample to sample (a transformer's token
  states, an LSTM's state); measured on each run they don't. On paraphrase-MiniLM-L3 static INT8
  reached cosine 0.69 (0.986 with 48 layers in float); this form 0.996 at 0.47x FP32's time. Its
  u8s8 kernels saturate like static INT8's on CPUs without VNNI, so the weights are 7-bit unless
  both the profile and this host have VNNI (the host must compute what the device will).
* fp16: FP16 weights and compute with FP32 inputs/outputs.
* fp32: ONNX Runtime's offline graph optimisation (EXTENDED: portable across x86 CPUs).

Calibration: MinMax (the default), Entropy or Percentile (ONNX Runtime's ``CalibrationMethod``,
``job.options["calibration_method"]``). Mixed precision: the nodes named in
``job.options["float_nodes"]`` are passed to the quantizer as ``nodes_to_exclude`` and run in FP32.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

import onnx
import onnx.defs

from compilers import mixed, ort_tools
from compilers.base import CompileJob, Target, TargetOutput
from compilers.errors import TargetError, UnsupportedOpError
from compilers.hostcpu import host_has_vnni
from compilers.mixed import LayerCost
from compilers.modelcheck import iter_nodes, node_label
from compilers.options import DYNAMIC

MODEL_FILE = "model.onnx"
_STANDARD = ("", "ai.onnx", "ai.onnx.ml")


def _expands_to_function(domain: str, op: str) -> bool:
    # ONNX ops defined as functions (HardSwish, Mish, ...) are inlined by ONNX Runtime, and
    # Constant is folded at load: neither needs a kernel.
    if op == "Constant" and domain in _STANDARD:
        return True
    try:
        schema = onnx.defs.get_schema(op, domain=domain)
    except onnx.defs.SchemaError:
        return False
    # getattr: the attributes exist at run time but not in onnx's type stubs.
    return bool(
        getattr(schema, "has_function", False) or getattr(schema, "has_context_dependent_function", False)
    )


class OnnxX86Target(Target):
    name: ClassVar[str] = "onnx-x86"
    runtime: ClassVar[str] = "onnxruntime"
    precisions: ClassVar[tuple[str, ...]] = ("int8", "fp16", "fp32")
    calibration_methods: ClassVar[tuple[str, ...]] = ("MinMax", "Entropy", "Percentile", DYNAMIC)
    runs_onnx_ml: ClassVar[bool] = True  # ONNX Runtime has the ai.onnx.ml kernels

    def check_ops(self, model: Any) -> None:
        """Refuse the first node ONNX Runtime's CPU provider (as installed here) has no kernel for
        and that is neither a model-local function nor an ONNX function op."""
        kernels = ort_tools.cpu_kernels()
        local = {(f.domain, f.name) for f in model.functions}
        for i, node in enumerate(iter_nodes(model.graph)):
            key = (node.domain if node.domain != "ai.onnx" else "", node.op_type)
            if key in kernels or key in local or _expands_to_function(*key):
                continue
            where = f"{node.domain}." if node.domain else ""
            raise UnsupportedOpError(
                self.name,
                f"{where}{node.op_type}",
                node_label(node, i),
                f"ONNX Runtime {ort_tools.ort_version()} has no CPU kernel for it",
            )

    def _weights_only(
        self,
        job: CompileJob,
        work: Path,
        out: Path,
        excluded: tuple[str, ...],
        build: dict[str, Any],
        notes: list[str],
    ) -> None:
        """Dynamic INT8 of :data:`ort_tools.WEIGHTS_ONLY_OPS`, per channel, into ``out``."""
        reduce_range = not job.profile.has_vnni or host_has_vnni() is False
        job.progress("quantizing to INT8 (dynamic: matrix products, recurrent cells and embeddings)")
        pre = work / "pre.onnx"
        ort_tools.pre_process(job.source_path, pre)
        ops = ort_tools.WEIGHTS_ONLY_OPS
        ort_tools.quantize_dynamic_int8(pre, out, excluded, ops, per_channel=True, reduce_range=reduce_range)
        if not ort_tools.has_int8_weights(out):
            raise TargetError(
                f"dynamic INT8 found nothing to quantize: no {', '.join(ops)} layer has weights"
            )
        taken, kept = ort_tools.weighted_layers(pre, excluded)
        build["weighted_layers"] = len(taken) + len(kept)
        build["fp32_size_bytes"] = pre.stat().st_size  # the float model it was quantized from
        build["quantization"] = {
            "format": "dynamic",
            "weight_type": "QInt8",
            "per_channel": True,
            "reduce_range": reduce_range,
            "op_types": list(ops),
        }
        if kept:
            build["float_nodes"] = list(kept)
        notes.append(
            "dynamic INT8: weights of the matrix products, recurrent cells and embeddings in 8 bits "
            f"({'7' if reduce_range else '8'}-bit range), activations quantized on each run"
            + (f"; {len(kept)} convolution layer(s) kept in float" if kept else "")
        )
        if reduce_range and job.profile.has_vnni:
            notes.append(
                f"weights quantized to 7 bits: this host's CPU has no VNNI, where 8-bit u8s8 products "
                f"saturate, and it must compute what {job.profile.name} will"
            )

    def compile(self, job: CompileJob, staging: Path) -> TargetOutput:
        """Write ``model.onnx`` for ``job.precision``. Raises ToolchainError or TargetError."""
        out = staging / MODEL_FILE
        notes: list[str] = []
        build: dict[str, Any] = {"onnxruntime_tools": ort_tools.ort_version()}
        int8_in_float = None
        with tempfile.TemporaryDirectory(prefix="edgefleet-onnx-x86-") as work:
            float_nodes = tuple(job.options.get("float_nodes", ()))
            if job.precision == "int8" and job.options.get("calibration_method") == DYNAMIC:
                self._weights_only(job, Path(work), out, float_nodes, build, notes)
            elif job.precision == "int8" and job.calibration is not None:
                method = job.options.get("calibration_method") or self.calibration_methods[0]
                settings = ort_tools.QdqSettings(reduce_range=not job.profile.has_vnni, calibration=method)
                kept = f", {len(float_nodes)} layer(s) kept in float" if float_nodes else ""
                job.progress(
                    f"quantizing to INT8 (static QDQ, per-channel, {method}) with {_rows(job)} "
                    f"calibration samples{kept}"
                )
                pre = Path(work) / "pre.onnx"
                ort_tools.pre_process(job.source_path, pre)
                if float_nodes:
                    float_nodes = mixed.with_float_producers(onnx.load(str(pre)), float_nodes)
                unbounded = ort_tools.quantize_qdq(
                    pre, out, job.calibration, job.inputs, settings, float_nodes
                )
                if not ort_tools.has_qdq(onnx.load(str(out), load_external_data=False)):
                    out.unlink()
                    # a tree ensemble, an SVM, a model of ops the quantizer has no INT8 form for
                    raise TargetError(
                        f"INT8 for {self.name} found nothing to quantize: no layer of this model takes "
                        "Q/DQ"
                        + (f" with {len(float_nodes)} layer(s) in float" if float_nodes else "")
                        + "; compile with --precision fp32"
                    )
                build["quantization"] = settings.to_dict()
                notes += ort_tools.non_finite_record(build["quantization"], unbounded)
                if float_nodes:
                    build["quantization"]["nodes_to_exclude"] = list(float_nodes)
                    build["float_nodes"] = list(float_nodes)
                if not settings.reduce_range and host_has_vnni() is False:
                    int8_in_float = (
                        f"this host's CPU has no VNNI, where ONNX Runtime's 8-bit u8s8 kernels saturate, "
                        f"and {job.profile.name}'s has: its INT8 can't be timed here"
                    )
                if settings.reduce_range:
                    notes.append(
                        f"weights quantized to 7 bits (reduce_range): profile {job.profile.name} has no "
                        "VNNI, where 8-bit u8s8 products can saturate"
                    )
            elif job.precision == "int8":
                job.progress("quantizing to INT8 (dynamic: no calibration data)")
                pre = Path(work) / "pre.onnx"
                ort_tools.pre_process(job.source_path, pre)
                ort_tools.quantize_dynamic_int8(pre, out, float_nodes)
                build["quantization"] = {"format": "dynamic", "weight_type": "QInt8"}
                if float_nodes:
                    build["quantization"]["nodes_to_exclude"] = list(float_nodes)
                notes.append(
                    "no calibration data: used dynamic INT8 (weights only); convolutions become ConvInteger, "
                    "which is usually slower than FP32 on CPUs; give --calibration for static INT8"
                )
            elif job.precision == "fp16":
                job.progress("converting to FP16 (inputs and outputs stay FP32)")
                fp32_ops = ort_tools.fp32_only_ops(job.source_path)
                if fp32_ops is not None:
                    raise TargetError(
                        f"FP16 for {self.name} converts nothing: every op of this model stays FP32 "
                        f"({', '.join(fp32_ops)}); compile with --precision fp32"
                    )
                ort_tools.to_fp16(job.source_path, out)
                build["fp16"] = {"keep_io_types": True}
            elif job.precision == "fp32":
                job.progress("optimising the FP32 graph (ORT_ENABLE_EXTENDED)")
                ort_tools.optimize(job.source_path, out, "ORT_ENABLE_EXTENDED")
                build["optimization"] = "ORT_ENABLE_EXTENDED"
            else:
                raise TargetError(f"target {self.name} can't produce precision {job.precision!r}")
        return TargetOutput(
            entrypoint=MODEL_FILE,
            files={MODEL_FILE: "model"},
            inputs=job.inputs,
            outputs=job.outputs,
            runtime_version=job.profile.runtime.version,
            build=build,
            int8_in_float=int8_in_float,
            notes=tuple(notes),
        )

    def layer_costs(self, job: CompileJob, staging: Path) -> tuple[LayerCost, ...] | None:
        """The static QDQ model's layers ranked by quantization cost against FP32
        (:func:`compilers.mixed.rank_qdq_layers`); ``None`` for dynamic INT8 (no QDQ to compare)."""
        if job.calibration is None:
            return None
        return mixed.rank_qdq_layers(job.source_path, staging / MODEL_FILE, job.calibration, job.inputs)


def _rows(job: CompileJob) -> int:
    assert job.calibration is not None
    return len(next(iter(job.calibration.values())))
