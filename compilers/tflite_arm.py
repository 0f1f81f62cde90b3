"""The ``tflite-arm`` target: ONNX → ``.tflite`` with onnx2tf, for LiteRT on ARM boards.

onnx2tf runs in its own environment (:mod:`compilers.toolchains`, toolchain ``tflite``) as a
subprocess running :mod:`compilers._tflite_convert`; this module prepares its inputs, streams its
progress, turns its failures into one-line errors, and describes the file it made.

Precisions: ``int8`` is full-integer quantization (int8 weights, activations, inputs and outputs,
per-channel weights) calibrated on the job's samples, or with calibration method ``Dynamic`` the
TFLite converter's dynamic-range quantization (int8 weights, float activations quantized on each
run; no calibration, so models with integer inputs take it too); ``fp16`` stores float16 weights
with float32 inputs and outputs; ``fp32`` is plain float.

**Layout.** onnx2tf turns channel-first tensors into channel-last ones (NCHW → NHWC, NCW → NWC,
NCDHW → NDHWC) and leaves 2-D ones alone. The bundle keeps the source model's tensors in the
manifest and records, per tensor, the compiled model's name and shape, the ``transpose`` from the
source layout to the compiled one, and the int8 ``quantization``; the agent applies them, so
clients keep sending source-layout (NCHW, float32) tensors.

**Matching tensors.** onnx2tf's tensors are matched to the source model's inputs and outputs in
this order, each model tensor used once:

1. by name: the serving signature's key, or the tensor name without ``serving_default_`` and
   ``:0``, equals the source name (as onnx2tf spells it: ``:`` becomes ``__``, and a leading
   ``/`` becomes ``wa/`` in quantized models). Float models keep the ONNX output names as
   signature keys;
2. by onnx2tf's positional key: INT8 models name their outputs ``output_<k>`` for the k-th source
   output (tensor names and the interpreter's output order are *not* stable across onnx2tf's
   files, so neither is used for this);
3. by order and shape: the first remaining tensor whose shape fits the source shape as is or
   channel-last.

A tensor's ``transpose`` is then decided by its shape: the layout (as is, or channel-last) that
fits with more equal fixed dimensions wins; a tie (square or dynamic shapes) goes to onnx2tf's
convention, channel-last for rank 3 and up, and is noted in the build notes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agent.contracts.manifest import Quantization, TensorSpec
from agent.runtimes import litert_interpreter_class, unavailable_reason
from compilers import _tflite_convert, toolchains
from compilers.base import CompileJob, Target, TargetOutput
from compilers.errors import (
    CalibrationError,
    CompileError,
    TargetError,
    ToolchainError,
    UnsupportedOpError,
)
from compilers.mixed import LayerCost
from compilers.modelcheck import iter_nodes, node_label, one_line
from compilers.options import DYNAMIC

log = logging.getLogger(__name__)
TOOLCHAIN = "tflite"
ENTRYPOINT = "model.tflite"
DEFAULT_TIMEOUT_S = 1800
SCRIPT = Path(_tflite_convert.__file__).resolve()
_DEFAULT_DOMAINS = ("", "ai.onnx")

# onnx2tf's file for each precision (the ``kind`` keys of the converter's result).
_KIND = {"int8": "full_integer_quant", "fp16": "float16", "fp32": "float32"}

# Used by check_ops when the toolchain is not installed (compile then fails with ToolchainError
# anyway): the default-domain ONNX ops (onnx 1.23) that onnx2tf 1.29.24 has no converter for.
DENYLIST = frozenset(
    {"BitCast", "CastLike", "CausalConvWithState", "LinearAttention", "SequenceMap", "SwiGLU", "Swish"}
)

_LAYOUT_NAMES = {3: ("NCW", "NWC"), 4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STAGE = re.compile(r"^(?P<what>.*?\b(?:started|complete!?|failed\.?))\s*=*\s*$")
_ERROR = re.compile(r"\bERROR:\s*(?P<msg>.+)$|^(?P<exc>[A-Za-z_.]*(?:Error|Exception)): (?P<emsg>.+)$")


class TfliteArmTarget(Target):
    """ONNX → TFLite through onnx2tf, run by LiteRT (``ai-edge-litert``) on the device."""

    name: ClassVar[str] = "tflite-arm"
    runtime: ClassVar[str] = "litert"
    precisions: ClassVar[tuple[str, ...]] = ("int8", "fp16", "fp32")
    # The TF converter calibrates on min/max over the representative dataset; it has no other.
    # Dynamic: its dynamic-range quantization, which calibrates nothing (integer inputs welcome).
    calibration_methods: ClassVar[tuple[str, ...]] = ("MinMax", DYNAMIC)
    layer_ranking: ClassVar[str] = (
        "relative quantization noise added per layer against the float model (TF QuantizationDebugger)"
    )

    def check_ops(self, model: Any) -> None:
        """Refuse the first node (subgraphs included) outside the default ONNX domain, or whose
        op the installed onnx2tf has no converter for (without the toolchain: one of
        :data:`DENYLIST`). Raises :class:`UnsupportedOpError` naming the op and the node."""
        supported = supported_ops()
        for i, node in enumerate(iter_nodes(model.graph)):
            if node.domain not in _DEFAULT_DOMAINS:
                why = "onnx2tf converts only default-domain ONNX ops"
                raise UnsupportedOpError(self.name, f"{node.domain}.{node.op_type}", node_label(node, i), why)
            if supported is not None and node.op_type not in supported:
                why = "the installed onnx2tf has no converter for it"
                raise UnsupportedOpError(self.name, node.op_type, node_label(node, i), why)
            if supported is None and node.op_type in DENYLIST:
                why = "onnx2tf 1.29 has no converter for it"
                raise UnsupportedOpError(self.name, node.op_type, node_label(node, i), why)

    def compile(self, job: CompileJob, staging: Path) -> TargetOutput:
        """Convert ``job.source_path`` and write ``model.tflite`` into ``staging``.

        Raises :class:`TargetError` (precision), :class:`CalibrationError` (INT8 without usable
        calibration), :class:`ToolchainError` (converter missing or broken),
        :class:`UnsupportedOpError` (an op onnx2tf has no converter for) or
        :class:`CompileError` (onnx2tf failed or timed out, or its tensors can't be matched).
        ``job.options["timeout_s"]`` bounds the converter's run (default :data:`DEFAULT_TIMEOUT_S`).
        """
        if job.precision not in self.precisions:
            raise TargetError(f"target {self.name} makes {', '.join(self.precisions)}, not {job.precision!r}")
        dynamic = job.precision == "int8" and job.options.get("calibration_method") == DYNAMIC
        static = job.precision == "int8" and not dynamic
        if static:
            check_int8_inputs(job.inputs)
        calibration = prepare_calibration(job.inputs, job.calibration) if static else {}
        python = toolchains.python_for(TOOLCHAIN)
        # Flags that requantize onnx2tf's saved model (mixed precision, ranking, dynamic range).
        float_nodes, requantize = ((), ["--dynamic-range"]) if dynamic else _mixed_args(job)
        kind = _DYNAMIC_KIND if dynamic else _MIXED_KIND if float_nodes else _KIND[job.precision]
        timeout_s = float(job.options.get("timeout_s", DEFAULT_TIMEOUT_S))
        with tempfile.TemporaryDirectory(prefix="edgefleet-tflite-") as tmp:
            work = Path(tmp)
            model = work / "model.onnx"  # onnx2tf rewrites its input in place: give it a copy
            prepared = prepare_model(job.source_path, model)
            renamed, shapes, echoes = prepared.renamed, prepared.shapes, prepared.echoes
            strategies = tuple(job.options.get("strategies") or ())
            cache = ConversionCache.of(job, model, shapes, strategies)
            entry = (
                None if cache is None else cache.find(kind, calibration, needs_saved_model=bool(requantize))
            )
            if entry is not None and not requantize:
                job.progress(f"reusing this compile's earlier onnx2tf conversion for {job.precision}")
                result, out_dir = json.loads((entry / "result.json").read_text()), entry / "out"
            else:
                args = [
                    "--model",
                    str(model),
                    "--output-dir",
                    str(work / "out"),
                    "--result",
                    str(work / "result.json"),
                ]
                for name, dims in shapes.items():
                    args += ["--input-shape", name, ",".join(map(str, dims))]
                if strategies:
                    args += ["--strategies", ",".join(strategies)]
                for i, (name, samples) in enumerate(calibration.items()):
                    path = work / f"calibration_{i}.npy"
                    np.save(path, samples)
                    args += ["--calibration", onnx2tf_name(name, quantized=True), str(path), "0", "1"]
                args += requantize
                if entry is not None:
                    args += ["--converted", str(entry)]
                    job.progress(f"{job.precision} TFLite from this compile's earlier onnx2tf conversion")
                else:
                    job.progress(
                        f"converting to {job.precision} TFLite with onnx2tf (tens of seconds to minutes)"
                    )
                result = run_converter(python, args, work, timeout_s, job.progress, job.source_path)
                out_dir = work / "out"
                if cache is not None and entry is None and (dynamic or not requantize):
                    cache.store(out_dir, result, calibration)  # its float models serve later attempts
            made = out_dir / result["files"][kind]
            shutil.copyfile(made, staging / ENTRYPOINT)
            fp32_size = (out_dir / result["files"]["float32"]).stat().st_size
        io = read_io(staging / ENTRYPOINT) or result["io"][kind]
        ins, in_notes = describe(job.inputs, io["inputs"], "input")
        computed = tuple(s for s in job.outputs if s.name not in echoes)
        described, out_notes = describe(computed, io["outputs"], "output", prepared.output_names)
        by_name = {s.name: s for s in described}
        outs = [by_name.get(s.name) or replace(s, echo_of=echoes[s.name]) for s in job.outputs]
        out_notes += [
            f"output {o!r} passes input {i!r} through: left out of the TFLite model (onnx2tf drops "
            "such outputs); the runtime returns the input"
            for o, i in echoes.items()
        ]
        notes = layout_notes(ins + described) + in_notes + out_notes + strategy_notes(result)
        if renamed:
            notes.append(
                f"{renamed} node names with characters TensorFlow refuses in scope names were renamed"
            )
        build = {
            "converter": "onnx2tf",
            "onnx2tf_version": result.get("onnx2tf_version"),
            "tensorflow_version": result.get("tensorflow_version"),
            "converted_from": made.name,
            "quantization": _DYNAMIC_NOTE if dynamic else _QUANT_NOTE[job.precision],
            "calibration_samples": _samples(calibration),
            "convert_seconds": result.get("seconds"),
            "fp32_tflite_size_bytes": fp32_size,
            "strategy": result.get("strategy"),
            "onnx2tf_switches": result.get("switches"),
            "onnx2tf_attempts": result.get("attempts", []),
            # this compile's earlier conversion reused (ConversionCache): no onnx2tf run of its own
            "conversion_reused": entry is not None,
        }
        if float_nodes:
            build["quantization"] = _MIXED_NOTE
            build["float_nodes"] = list(result.get("float_nodes", float_nodes))
        if "layer_costs" in result:
            build["layer_costs"] = result["layer_costs"]
        return TargetOutput(
            entrypoint=ENTRYPOINT,
            files={ENTRYPOINT: "model"},
            inputs=tuple(ins),
            outputs=tuple(outs),
            runtime_version=job.profile.runtime.version,
            build=build,
            runnable_here=unavailable_reason(self.runtime),
            notes=tuple(notes),
        )

    def layer_costs(self, job: CompileJob, staging: Path) -> tuple[LayerCost, ...] | None:
        """INT8 layers ranked by the quantization noise each adds against the float model
        (TensorFlow's QuantizationDebugger, in the converter; the conversion runs again)."""
        if job.precision != "int8" or job.calibration is None:
            return None
        with tempfile.TemporaryDirectory(prefix="edgefleet-tflite-rank-") as tmp:
            made = self.compile(replace(job, options={**job.options, "rank_layers": True}), Path(tmp))
        costs = made.build.get("layer_costs") or []
        return tuple(
            LayerCost(str(c["node"]), str(c["op"]), float(c["cost"]), join=int(c.get("join", 0)))
            for c in costs
        )


class ConversionCache:
    """onnx2tf's conversions of one model within one compile (``job.options["scratch_dir"]``,
    which the pipeline removes when the compile ends), so the compile's later attempts reuse
    them: a run with calibration data makes the float32, float16 and INT8 models at once, so an
    FP16 or FP32 attempt after a refused INT8 one converts nothing, and mixed-precision attempts
    and the layer ranking requantize the saved model instead of converting again. Entries are
    keyed by the prepared model's bytes, its input shapes and the strategies allowed, plus the
    calibration data's digest for INT8."""

    def __init__(self, root: Path, key: str) -> None:
        self.root = root
        self.key = key

    @classmethod
    def of(
        cls, job: CompileJob, model: Path, shapes: dict[str, list[int]], strategies: tuple[str, ...]
    ) -> ConversionCache | None:
        scratch = job.options.get("scratch_dir")
        if not scratch:
            return None
        h = hashlib.sha256(model.read_bytes())
        h.update(json.dumps([sorted(shapes.items()), list(strategies)]).encode())
        return cls(Path(scratch) / "tflite-conversions", h.hexdigest()[:24])

    @staticmethod
    def digest(calibration: dict[str, np.ndarray]) -> str:
        if not calibration:
            return "float"
        h = hashlib.sha256()
        for name in sorted(calibration):
            a = np.ascontiguousarray(calibration[name])
            h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()[:24]

    def find(self, kind: str, calibration: dict[str, np.ndarray], needs_saved_model: bool) -> Path | None:
        """An entry with the ``kind`` of model asked for (any entry, for its saved model, when
        ``needs_saved_model``); ``None`` when there is none."""
        if not self.root.is_dir():
            return None
        wanted = self.root / f"{self.key}-{self.digest(calibration)}"
        for entry in [wanted, *sorted(self.root.glob(f"{self.key}-*"))]:
            try:
                files = json.loads((entry / "result.json").read_text())["files"]
            except (OSError, ValueError, KeyError):
                continue
            if needs_saved_model and (entry / "out" / "saved_model.pb").is_file():
                return entry
            if not needs_saved_model and kind in files and (kind != "full_integer_quant" or entry == wanted):
                return entry
        return None

    def store(self, out_dir: Path, result: dict[str, Any], calibration: dict[str, np.ndarray]) -> None:
        entry = self.root / f"{self.key}-{self.digest(calibration)}"
        try:
            shutil.rmtree(entry, ignore_errors=True)
            shutil.copytree(out_dir, entry / "out")
            (entry / "result.json").write_text(json.dumps(result))
        except OSError as exc:  # a full disk costs the reuse, not the compile
            log.warning("could not keep the onnx2tf conversion for reuse: %s", exc)
            shutil.rmtree(entry, ignore_errors=True)


_MIXED_KIND = "mixed_quant"  # _tflite_convert.MIXED_KIND
_DYNAMIC_KIND = "dynamic_range_quant"  # _tflite_convert.DYNAMIC_KIND
_DYNAMIC_NOTE = (
    "dynamic-range INT8: int8 weights; float32 activations, inputs and outputs, the inputs of fully "
    "connected, convolution and LSTM ops quantized on each run"
)
_MIXED_NOTE = (
    "INT8 with the listed ops kept float (TF QuantizationDebugger denylist); float32 inputs and outputs"
)


def _mixed_args(job: CompileJob) -> tuple[tuple[str, ...], list[str]]:
    """The float nodes asked for (TFLite tensor names) and the converter flags for mixed
    precision and layer ranking (INT8 only)."""
    if job.precision != "int8":
        return (), []
    nodes = tuple(str(n) for n in job.options.get("float_nodes", ()))
    args = [a for n in nodes for a in ("--mixed-float-node", n)]
    if job.options.get("rank_layers"):
        args.append("--rank-layers")
    return nodes, args


_QUANT_NOTE = {
    "int8": "full-integer INT8: per-channel int8 weights, int8 activations, int8 inputs and outputs",
    "fp16": "float16 weights (LiteRT widens them at load); float32 inputs and outputs",
    "fp32": "none (float32)",
}


def _samples(calibration: dict[str, np.ndarray]) -> int | None:
    return min((len(a) for a in calibration.values()), default=None)


# -- the converter environment -------------------------------------------------------------------

_OPS_PROBE = (
    "import importlib.util, json, os; s = importlib.util.find_spec('onnx2tf'); "
    "d = os.path.join(list(s.submodule_search_locations)[0], 'ops'); "
    "print(json.dumps(sorted(f[:-3] for f in os.listdir(d) if f.endswith('.py') and not f.startswith('_'))))"
)


def supported_ops() -> frozenset[str] | None:
    """The ONNX op types the tflite toolchain's onnx2tf has a converter for (onnx2tf looks each
    one up as the module ``onnx2tf/ops/<OpType>.py``), or ``None`` when the toolchain is not
    installed or can't be asked. The package is located, not imported, so this is quick."""
    try:
        python = toolchains.python_for(TOOLCHAIN)
    except ToolchainError:
        return None
    # Keyed by the real venv directory, so a reinstall (a new venv behind the same link) is seen.
    return _ops_of(str(python.parent.resolve() / python.name))


@lru_cache(maxsize=4)
def _ops_of(python: str) -> frozenset[str] | None:
    try:
        proc = subprocess.run([python, "-I", "-c", _OPS_PROBE], capture_output=True, text=True, timeout=60)
        names = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return frozenset(names) - {"Input"} if names else None


def onnx2tf_name(name: str, quantized: bool) -> str:
    """``name`` as onnx2tf renames tensors: ``:`` → ``__``, and when it makes quantized models a
    leading ``/`` → ``wa/``."""
    out = name.replace(":", "__")
    return re.sub(r"^/", "wa/", out) if quantized else out


_TRYING = re.compile(r"^\[edgefleet\] trying strategy (?P<i>\d+)/(?P<n>\d+) (?P<name>\S+):")
_CONVERTED = "[edgefleet] reading the converted models"


def run_converter(
    python: Path, args: list[str], work: Path, timeout_s: float, progress: Any, source: Path
) -> dict[str, Any]:
    """Run the converter script in ``work`` with the toolchain's ``python``; stream its stage
    lines to ``progress``; return its result object.

    onnx2tf and TensorFlow sometimes crash outright (a segmentation fault inside a layer's
    conversion) where another strategy's switches convert the model: a converter that dies during
    a strategy's conversion is run again with the strategies after it, and the result's
    ``attempts`` list the crash.

    Raises :class:`ToolchainError` (the toolchain can't run), :class:`UnsupportedOpError`,
    or :class:`CompileError` (onnx2tf failed, died or ran past ``timeout_s``), each with one line
    of reason; the tail of the converter's log is attached as an exception note.
    """
    crashed: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            left = max(1.0, deadline - time.monotonic())
            return _run_converter_once(python, args, work, left, progress, source, crashed)
        except _ConverterDied as died:
            rest = _strategies_after_crash(died.log, args)
            if rest is None:
                raise died.error from None
            crashed.append({"strategy": rest[0], "error": f"the converter died ({died.how})"})
            progress(f"the converter died ({died.how}) in strategy {rest[0]}: trying {', '.join(rest[1])}")
            args = _with_strategies(args, rest[1])


class _ConverterDied(Exception):
    def __init__(self, error: CompileError, how: str, log: list[str]) -> None:
        super().__init__(str(error))
        self.error, self.how, self.log = error, how, log


def _strategies_after_crash(log: list[str], args: list[str]) -> tuple[str, list[str]] | None:
    """``(the strategy the converter died in, the ones still to try)`` when it died converting
    and some are left; ``None`` otherwise (pure)."""
    for j in range(len(log) - 1, -1, -1):
        m = _TRYING.match(log[j])
        if m is None:
            continue
        if any(line.startswith(_CONVERTED) for line in log[j:]):
            return None  # it died after converting (quantizing, ranking): no strategy helps
        allowed = _allowed_strategies(args)
        if m["name"] not in allowed:
            return None
        rest = allowed[allowed.index(m["name"]) + 1 :]
        return (m["name"], rest) if rest else None
    return None


def _allowed_strategies(args: list[str]) -> list[str]:
    names = [s.name for s in _tflite_convert.STRATEGIES]
    if "--strategies" in args:
        chosen = set(args[args.index("--strategies") + 1].split(","))
        return [n for n in names if n in chosen]
    return names


def _with_strategies(args: list[str], names: list[str]) -> list[str]:
    if "--strategies" in args:
        i = args.index("--strategies")
        return [*args[:i], *args[i + 2 :], "--strategies", ",".join(names)]
    return [*args, "--strategies", ",".join(names)]


def _run_converter_once(
    python: Path,
    args: list[str],
    work: Path,
    timeout_s: float,
    progress: Any,
    source: Path,
    crashed: list[dict[str, Any]],
) -> dict[str, Any]:
    """One run of the converter (see :func:`run_converter`), after the strategies it ``crashed``
    in; raises :class:`_ConverterDied` when it ends without a result."""
    (work / "result.json").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", PYTHONUNBUFFERED="1")
    cmd = [str(python), "-I", "-u", str(SCRIPT), *args]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group, so a timeout ends onnxsim too
        )
    except OSError as exc:
        raise ToolchainError(f"the tflite toolchain's python {python} does not start: {exc}") from exc
    log: list[str] = []
    reader = threading.Thread(target=_pump, args=(proc, log, progress), daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(5)
        raise _with_log(
            CompileError(f"onnx2tf ran past {timeout_s:.0f} s and was stopped (raise the timeout_s option)"),
            log,
        ) from None
    reader.join(5)
    progress(f"onnx2tf finished in {time.monotonic() - started:.0f} s")
    try:
        result: dict[str, Any] = json.loads((work / "result.json").read_text())
    except (OSError, ValueError):
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        error = _with_log(CompileError(f"the converter died ({how}): {one_line(_last_error(log))}"), log)
        raise _ConverterDied(error, how, log) from None
    if crashed:
        result["attempts"] = crashed + list(result.get("attempts") or [])
    if result.get("ok"):
        return result
    kind, message = result.get("error_kind"), str(result.get("error", "unknown error"))
    if kind == "toolchain":
        err: CompileError = ToolchainError(
            f"the tflite toolchain at {python} is broken ({message}): "
            "run `edgectl toolchains install tflite --force`"
        )
    elif kind == "unsupported_op":
        op = str(result.get("op", "?"))
        err = UnsupportedOpError(
            TfliteArmTarget.name, op, _node_of(source, op), "onnx2tf has no converter for it"
        )
    elif kind == "quantization":
        # ToolchainError: this precision can't be made, another can (``auto`` goes on to FP16).
        err = ToolchainError(
            f"onnx2tf converted the model but could not quantize it to INT8 ({one_line(message)}); "
            "try --precision fp16"
        )
    else:
        err = conversion_error(source, result.get("attempts") or [], _last_error(log, message))
    raise _with_log(err, log)


def conversion_error(source: Path, attempts: list[dict[str, Any]], last: str) -> CompileError:
    """The error for a conversion that failed with every strategy: an :class:`UnsupportedOpError`
    naming the op and node when onnx2tf named the node it failed at, else a :class:`CompileError`."""
    tried = f"{len(attempts)} strateg{'y' if len(attempts) == 1 else 'ies'}"
    nodes = [a["node"] for a in attempts if a.get("node")]
    if nodes:
        node = re.sub(r"^wa/", "/", nodes[-1])  # onnx2tf's spelling of a leading "/" in quantized runs
        return UnsupportedOpError(
            TfliteArmTarget.name,
            _op_of(source, node),
            node,
            f"onnx2tf failed there with {tried} ({one_line(last, 160)})",
            hint="another --input-shape, --precision fp16, or compiling for onnx-x86",
        )
    with_ = f" with {tried}" if attempts else ""
    return CompileError(f"onnx2tf could not convert the model{with_}: {one_line(last)}")


def strategy_notes(result: dict[str, Any]) -> list[str]:
    """A note saying which strategy converted the model when the default did not."""
    attempts = result.get("attempts") or []
    if not attempts:
        return []
    failed = "; ".join(f"{a['strategy']}: {one_line(a.get('error', ''), 100)}" for a in attempts)
    return [
        f"onnx2tf converted the model with strategy {result.get('strategy')} "
        f"({result.get('switches')}) after {len(attempts)} failed ({failed})"
    ]


def _op_of(source: Path, node: str) -> str:
    """The op type of the node named ``node`` in ``source`` ('?' if there is none)."""
    try:
        import onnx

        graph = onnx.load(str(source), load_external_data=False).graph
        for n in iter_nodes(graph):
            if n.name == node:
                return n.op_type
    except Exception as exc:  # only names the op in an error message; never hide the real error
        log.debug("could not read %s to find node %s: %s", source, node, exc)
    return "?"


_BAD_SCOPE = re.compile(r"[^A-Za-z0-9_.\\/>-]")


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare_model` changed: nodes renamed, the input shapes for ``-ois``, the
    outputs left out as echoes of an input, and graph outputs renamed (source → converted)."""

    renamed: int
    shapes: dict[str, list[int]]
    echoes: dict[str, str]
    output_names: dict[str, str]


def prepare_model(source: Path, dest: Path) -> Prepared:
    """Write the model onnx2tf converts to ``dest`` (with its external data beside it, when it
    has any) and return how many nodes were renamed, the input shapes for onnx2tf's ``-ois``
    (a dynamic batch as 1; empty when another dim is dynamic), the graph outputs left out
    because they only pass an input through (output name → input name; onnx2tf would drop
    them, and the bundle's manifest marks them ``echo_of``), and the graph outputs renamed
    because onnx2tf drops an output whose name TensorFlow can't take (``onnx::Shape_422``, a
    torch.onnx name) when other nodes also read it.

    onnx2tf uses node names as TensorFlow scope names: a name with a character outside
    ``[A-Za-z0-9_./>-]`` (paddle2onnx writes ``Softmax@0``) fails the conversion, so such names
    become ``Softmax_0`` (graph inputs and outputs keep theirs)."""
    import onnx
    from onnx import external_data_helper

    raw = onnx.load(str(source), load_external_data=False)
    external = any(external_data_helper.uses_external_data(t) for t in raw.graph.initializer)
    model = onnx.load(str(source)) if external else raw
    taken = {n.name for n in iter_nodes(model.graph)}
    renamed = 0
    for node in iter_nodes(model.graph):
        if node.name and _BAD_SCOPE.search(node.name):
            new = base = _BAD_SCOPE.sub("_", node.name)
            k = 1
            while new in taken:
                new, k = f"{base}_{k}", k + 1
            taken.add(new)
            node.name, renamed = new, renamed + 1
    echoes = echo_outputs(model)
    if echoes:
        keep = [o for o in model.graph.output if o.name not in echoes]
        del model.graph.output[:]
        model.graph.output.extend(keep)
    output_names = _rename_outputs(model)
    if external:
        onnx.save(model, str(dest), save_as_external_data=True, location=dest.name + ".data")
    elif renamed or echoes or output_names:
        onnx.save(model, str(dest))
    else:
        shutil.copyfile(source, dest)
    initializers = {i.name for i in model.graph.initializer}
    shapes: dict[str, list[int]] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.dim_value > 0 else -1 for d in value.type.tensor_type.shape.dim]
        if dims and dims[0] < 0:
            dims[0] = 1  # what the fixed-shape strategy (-b 1) makes of a dynamic batch
        if not dims or any(d <= 0 for d in dims):
            return Prepared(renamed, {}, echoes, output_names)
        shapes[value.name] = dims
    return Prepared(renamed, shapes, echoes, output_names)


def _rename_outputs(model: Any) -> dict[str, str]:
    """Give each graph output whose name has a character outside ``[A-Za-z0-9_./>-]`` a clean
    one, everywhere it is read; returns source name → new name."""
    taken = {t for n in iter_nodes(model.graph) for t in (*n.input, *n.output)}
    taken |= {v.name for v in (*model.graph.input, *model.graph.output)}
    out: dict[str, str] = {}
    for value in model.graph.output:
        if not _BAD_SCOPE.search(value.name):
            continue
        new = base = _BAD_SCOPE.sub("_", value.name).strip("_") or "output"
        k = 1
        while new in taken:
            new, k = f"{base}_{k}", k + 1
        taken.add(new)
        out[value.name] = new
        value.name = new
    if out:
        for node in iter_nodes(model.graph):
            node.input[:] = [out.get(x, x) for x in node.input]
            node.output[:] = [out.get(x, x) for x in node.output]
    return out


def echo_outputs(model: Any) -> dict[str, str]:
    """Graph outputs that are a graph input, or an ``Identity`` of one: output → input. Empty
    when every output is such (the model would be left with nothing to convert)."""
    inputs = {v.name for v in model.graph.input} - {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out: dict[str, str] = {}
    for value in model.graph.output:
        name, node = value.name, producer.get(value.name)
        if name in inputs:
            out[name] = name
        elif (
            node is not None
            and node.op_type == "Identity"
            and node.domain in ("", "ai.onnx")
            and node.input
            and node.input[0] in inputs
        ):
            out[name] = node.input[0]
    return out if len(out) < len(model.graph.output) else {}


def _pump(proc: subprocess.Popen[str], log: list[str], progress: Any) -> None:
    """Read the converter's output: every line into ``log``, stage lines to ``progress``."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = _ANSI.sub("", raw).rstrip()
        if not line.strip():
            continue
        log.append(line)
        if line.startswith("[edgefleet] "):
            progress(line[len("[edgefleet] ") :])
        elif m := _STAGE.match(line.strip()):
            progress(f"onnx2tf: {m['what']}")


def _last_error(log: list[str], fallback: str = "no error message") -> str:
    """The last line of ``log`` that states an error (onnx2tf's ``ERROR:`` lines, Python's
    ``SomethingError: ...``), else ``fallback``. onnx2tf's advice printed after every failure
    (:data:`_ADVICE`) is not an error."""
    for line in reversed(log):
        m = _ERROR.search(line.strip())
        if m and not any(a in line for a in _ADVICE):
            return m["msg"] or f"{m['exc']}: {m['emsg']}"
    return fallback


_ADVICE = (
    "The trace log is below",
    "Read this and deal with it",
    "input_onnx_file_path:",
    "onnx_op_name:",
    "-b or -ois option",
    "-kt or -kat option",
    "-onwdt option",
    "ConvertFailure:",
)


def _with_log(err: CompileError, log: list[str], lines: int = 40) -> CompileError:
    if log:
        err.add_note("onnx2tf log (last lines):\n" + "\n".join(log[-lines:]))
    return err


def _node_of(source: Path, op: str) -> str:
    """The name of the first node of type ``op`` in the source model ('?' if none is found)."""
    try:
        import onnx

        graph = onnx.load(str(source), load_external_data=False).graph
        for i, node in enumerate(iter_nodes(graph)):
            if node.op_type == op:
                return node_label(node, i)
    except Exception as exc:  # only names the node in an error message; never hide the real error
        log.debug("could not read %s to name the node of op %s: %s", source, op, exc)
    return "?"


# -- calibration ----------------------------------------------------------------------------------


def channel_last(rank: int) -> tuple[int, ...] | None:
    """The permutation onnx2tf applies to a channel-first tensor of ``rank`` (``None`` below 3)."""
    return (0, *range(2, rank), 1) if rank >= 3 else None


def check_int8_inputs(inputs: tuple[TensorSpec, ...]) -> None:
    """Raise :class:`TargetError` for an integer input: onnx2tf (1.29) feeds every calibration
    sample to the TFLite converter as float32, so full-integer INT8 of a model that takes token
    ids or bytes fails after the whole conversion (seen on a text encoder and a byte classifier)."""
    ints = [s for s in inputs if np.dtype(s.dtype).kind in "iub"]
    if ints:
        which = ", ".join(f"{s.name!r} ({s.dtype})" for s in ints)
        raise TargetError(
            f"target {TfliteArmTarget.name} can't calibrate full-integer INT8 for integer input {which}: "
            "onnx2tf calibrates every input as float32; try --precision fp16"
        )


def prepare_calibration(
    inputs: tuple[TensorSpec, ...], calibration: dict[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Calibration samples per input as onnx2tf wants them: float32 (integer inputs keep their
    integer type), channel-last for inputs of rank 3 and up (NCHW → NHWC), unchanged for 2-D ones.

    Raises :class:`CalibrationError` when there is none (INT8 needs it), or an input's samples are
    missing, empty, of the wrong rank or fixed dimension, or not finite numbers.
    """
    if not calibration:
        raise CalibrationError(
            "INT8 for tflite-arm needs calibration data: pass samples of every input (an .npz "
            "keyed by input name, in the source layout, e.g. --calibration calibration.npz)"
        )
    out: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in calibration:
            have = ", ".join(sorted(calibration)) or "none"
            raise CalibrationError(f"no calibration samples for input {spec.name!r} (have: {have})")
        dtype = np.float32 if np.dtype(spec.dtype).kind == "f" else np.dtype(spec.dtype)
        try:
            arr = np.asarray(calibration[spec.name], dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"calibration for {spec.name!r} is not numeric: {exc}") from exc
        if arr.ndim != len(spec.shape) or len(arr) == 0:
            raise CalibrationError(
                f"calibration for {spec.name!r} has shape {list(arr.shape)}; "
                f"expected N samples of {list(spec.shape)}"
            )
        for i, (want, got) in enumerate(zip(spec.shape, arr.shape, strict=True)):
            if i > 0 and want >= 0 and want != got:
                raise CalibrationError(
                    f"calibration for {spec.name!r}: dim {i} is {got}, the model wants {want} "
                    f"(shape {list(arr.shape)} vs {list(spec.shape)})"
                )
        if not np.isfinite(arr).all():
            raise CalibrationError(f"calibration for {spec.name!r} holds NaN or infinite values")
        perm = channel_last(arr.ndim)
        out[spec.name] = np.ascontiguousarray(arr.transpose(perm) if perm else arr)
    return out


# -- describing the converted model ----------------------------------------------------------------


def read_io(path: Path) -> dict[str, Any] | None:
    """The ``.tflite`` file's inputs and outputs as read by LiteRT in this environment, in the
    converter's result format; ``None`` when LiteRT is not installed here."""
    interpreter = litert_interpreter_class()
    if interpreter is None:
        return None
    try:
        return _tflite_convert.io_details(path, interpreter)
    except (ValueError, RuntimeError) as exc:
        raise CompileError(f"LiteRT can't read the converted model: {one_line(exc)}") from exc


@dataclass(frozen=True)
class _Fit:
    perm: tuple[int, ...] | None
    ambiguous: bool


def _fits(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or x < 0 or y < 0 for x, y in zip(a, b, strict=True))


def _exact(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum(1 for x, y in zip(a, b, strict=True) if x == y and x >= 0)


def layout_fit(source: tuple[int, ...], model: tuple[int, ...]) -> _Fit | None:
    """How the source shape maps onto the model's: as is (``perm`` ``None``) or channel-last;
    ``None`` when neither fits. Ties go to channel-last for rank 3 and up (``ambiguous``)."""
    perm = channel_last(len(source))
    as_is = _fits(source, model)
    moved = tuple(source[i] for i in perm) if perm else None
    cl = moved is not None and _fits(moved, model)
    if as_is and not cl:
        return _Fit(None, False)
    if cl and not as_is:
        return _Fit(perm, False)
    if not as_is:
        return None
    assert moved is not None
    a, c = _exact(source, model), _exact(moved, model)
    if a != c:
        return _Fit(None if a > c else perm, False)
    # A tie matters only when the transpose moves data: two or more non-batch dims other than 1.
    return _Fit(perm, sum(1 for d in source[1:] if d != 1) > 1)


def _plain(name: str) -> str:
    name = name.removeprefix("serving_default_")
    return re.sub(r":\d+$", "", name)


def match(
    specs: tuple[TensorSpec, ...],
    tensors: list[dict[str, Any]],
    side: str,
    aliases: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """For each source tensor, the converted model's tensor (see the module docstring for the
    rules; a tensor of ``aliases`` is also found by its other name). Raises
    :class:`CompileError` when one can't be matched."""
    aliases = aliases or {}
    if len(specs) != len(tensors):
        raise CompileError(f"the source model has {len(specs)} {side}(s), onnx2tf's model {len(tensors)}")
    free = list(range(len(tensors)))
    chosen: dict[int, int] = {}

    def take(i: int, pred: Any) -> None:
        for j in free:
            if pred(tensors[j]):
                chosen[i] = j
                free.remove(j)
                return

    for i, spec in enumerate(specs):
        known = [spec.name, *([aliases[spec.name]] if spec.name in aliases else [])]
        names = {x for n in known for x in (n, onnx2tf_name(n, False), onnx2tf_name(n, True))}
        take(i, lambda t, names=names: t.get("signature_key") in names or _plain(t["name"]) in names)
    for i in range(len(specs)):
        if i not in chosen:
            take(i, lambda t, i=i: t.get("signature_key") == f"{side}_{i}")
    for i, spec in enumerate(specs):
        if i not in chosen:
            take(i, lambda t, spec=spec: layout_fit(tuple(spec.shape), tuple(t["shape"])) is not None)
        if i not in chosen:
            raise CompileError(
                f"can't find the source {side} {spec.name!r} {list(spec.shape)} among onnx2tf's "
                + ", ".join(f"{t['name']} {t['shape']}" for t in tensors)
            )
    return [tensors[chosen[i]] for i in range(len(specs))]


def describe(
    specs: tuple[TensorSpec, ...],
    tensors: list[dict[str, Any]],
    side: str,
    aliases: dict[str, str] | None = None,
) -> tuple[list[TensorSpec], list[str]]:
    """The source tensors with the converted model's name, shape, transpose and quantization
    filled in, and notes on layouts decided by convention. ``aliases``: source names the model
    given to onnx2tf had under another name. Raises :class:`CompileError`."""
    out, notes = [], []
    for spec, t in zip(specs, match(specs, tensors, side, aliases), strict=True):
        model_shape = tuple(int(x) for x in t["shape"])
        fit = layout_fit(tuple(spec.shape), model_shape)
        if fit is None:
            raise CompileError(
                f"onnx2tf's {side} {t['name']} has shape {list(model_shape)}, which fits the source "
                f"{side} {spec.name!r} {list(spec.shape)} neither as is nor channel-last"
            )
        if fit.ambiguous:
            notes.append(
                f"{side} {spec.name!r}: shape {list(spec.shape)} fits both layouts; "
                "assumed channel-last (onnx2tf's way)"
            )
        quant = None
        if t["dtype"] in ("int8", "uint8") and np.dtype(spec.dtype).kind == "f" and t["scale"] > 0:
            quant = Quantization(scale=float(t["scale"]), zero_point=int(t["zero_point"]), dtype=t["dtype"])
        out.append(
            replace(
                spec, model_name=t["name"], model_shape=model_shape, transpose=fit.perm, quantization=quant
            )
        )
    return out, notes


def layout_notes(specs: list[TensorSpec]) -> list[str]:
    """One note per tensor whose layout the conversion changed."""
    notes = []
    for s in specs:
        if s.transpose is None:
            continue
        src, dst = _LAYOUT_NAMES.get(len(s.shape), ("channel-first", "channel-last"))
        notes.append(
            f"layout changed: {s.name!r} is {src} {list(s.shape)} in the source and {dst} "
            f"{list(s.model_shape or ())} in the .tflite; the agent takes and returns the source "
            f"layout ({src}) and transposes on the device"
        )
    return notes
