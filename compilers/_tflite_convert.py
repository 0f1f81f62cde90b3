"""Convert one ONNX model to TFLite with onnx2tf. Runs in the *converter* environment, not EdgeFleet's.

:mod:`compilers.tflite_arm` starts this file as ``<converter python> -I -u _tflite_convert.py ...``:
it imports only the standard library, numpy and onnx2tf (with its TensorFlow), never EdgeFleet, so
the converter's pinned, older stack never meets the project's. Usage::

    _tflite_convert.py --model WORK/model.onnx --output-dir WORK/out --result WORK/result.json \\
        [--calibration INPUT_NAME CALIB_NHWC.npy MEAN STD]... [--input-shape NAME 1,3,48,192]... \\
        [--strategies default,fixed-shapes,...] [--mixed-float-node TENSOR]... [--rank-layers] \\
        [--dynamic-range]

- ``--model`` is a *copy* of the source: onnx2tf (through onnxsim) rewrites it in place.
- Every ``--calibration`` array is float32 (an integer input's: its integer type) in the layout
  the TFLite model takes (NHWC for 4-D image inputs, unchanged for 2-D ones; the ``keep-shapes``
  strategy moves it back to NCHW);
  onnx2tf feeds ``(x - MEAN) / STD`` to the calibrator, so pass ``0 1`` when the samples
  already are model inputs. With calibration the full-integer INT8 model (int8 inputs and
  outputs, per-channel weights) is made as well; float32 and float16 always are.
- **Strategies.** When onnx2tf fails, the conversion is tried again with the next of
  :data:`STRATEGIES` (onnx2tf switches for models it does not convert by default: a fixed batch
  and input shapes ``-b``/``-ois`` from ``--input-shape``, no onnxsim ``-nuo``, pseudo ops and
  unfolded group convolutions ``-rtpo``/``-dgc``/``-ebu``, no strict mode ``-dsm``, inputs kept as
  they are ``-kat``), each on a fresh copy of the model, until one works. An op onnx2tf has no
  converter for, or a broken toolchain, stops at once: no switch helps. The result names the
  ``strategy`` and ``switches`` that worked and the ``attempts`` that failed (each with the ONNX
  node onnx2tf names in its error, when it does).
- The result is one JSON object written to ``--result`` (onnx2tf owns stdout): ``ok``, ``files``
  (kind -> file name in the output dir, kinds ``float32``, ``float16``, ``full_integer_quant``),
  ``io`` (each file's input/output tensors as this environment's TFLite interpreter reads them),
  ``onnx2tf_version``, ``tensorflow_version``, ``seconds``, ``strategy``, ``switches``,
  ``attempts``; on failure ``ok`` is false and
  ``error_kind`` (``toolchain``, ``unsupported_op``, ``conversion``) and ``error`` say why. The exit
  status is 0 on success, 2 when the toolchain itself is broken, 1 otherwise.
- Progress lines for the operator start with ``[edgefleet]``.
- Mixed precision (:func:`quantize_mixed`, needs ``--calibration``): ``--mixed-float-node`` (repeatable)
  names a TFLite tensor whose producing op stays float; TensorFlow's ``QuantizationDebugger``
  requantizes onnx2tf's saved model with those nodes denylisted into the kind ``mixed_quant``
  (float32 inputs and outputs, INT8 inside). ``--rank-layers`` adds ``layer_costs`` to the result:
  each layer's output tensor with the relative quantization noise it adds against the float model.
- Dynamic range (:func:`quantize_dynamic_range`, needs no calibration): ``--dynamic-range``
  requantizes the saved model with the TFLite converter's default optimisation and no
  representative data into the kind ``dynamic_range_quant``: int8 weights, float32 activations,
  inputs and outputs, the inputs of fully connected, convolution and LSTM ops quantized on each run.

Works offline: onnx2tf fetches a sample calibration file for some 4-D inputs even when calibration
is given, so a stand-in of that name is placed in the working directory first; any remaining
attempt to open a network connection is refused (an audit hook) instead of hanging.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
KINDS = {
    "float32": "_float32.tflite",
    "float16": "_float16.tflite",
    "full_integer_quant": "_full_integer_quant.tflite",
}
EXIT_FAILED, EXIT_TOOLCHAIN = 1, 2


class ConvertFailure(Exception):
    """A failure with the ``error_kind`` to report."""

    def __init__(self, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.kind, self.extra = kind, extra


def say(message: str) -> None:
    print(f"[edgefleet] {message}", flush=True)


def refuse_network() -> None:
    """Refuse Python-level connections to anything but a local socket: the compile host may be
    offline, and an attempt must fail at once rather than wait for a timeout."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect" and args and getattr(args[0], "family", None) != socket.AF_UNIX:
            raise OSError(f"network access is disabled in the EdgeFleet converter (tried {args[1]!r})")
        if event == "socket.getaddrinfo" and args and args[0] not in (None, "localhost", "127.0.0.1", "::1"):
            raise OSError(f"network access is disabled in the EdgeFleet converter (looked up {args[0]!r})")

    sys.addaudithook(hook)


def place_sample_calibration(workdir: Path) -> None:
    """Write the stand-in for onnx2tf's downloadable sample images (20x128x128x3 float32 in
    [0, 1]). onnx2tf only uses it for its own dummy inference when real calibration is given."""
    import numpy as np

    path = workdir / SAMPLE_FILE
    if not path.is_file():
        rng = np.random.default_rng(0)
        np.save(path, rng.random((20, 128, 128, 3), dtype=np.float32))


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def io_details(path: Path, interpreter_cls: Any = None) -> dict[str, Any]:
    """The file's inputs and outputs as read by ``interpreter_cls`` (default: this environment's
    LiteRT, else TensorFlow's), in interpreter order, each with its serving signature key (``None``
    when the file has no signature). Also used by EdgeFleet itself, with its own LiteRT."""
    if interpreter_cls is None:
        try:
            from ai_edge_litert import interpreter as litert

            interpreter_cls = litert.Interpreter
        except ImportError:
            import tensorflow as tf

            interpreter_cls = tf.lite.Interpreter

    interp = interpreter_cls(model_path=str(path))
    keys: dict[str, dict[int, str]] = {"inputs": {}, "outputs": {}}
    signatures = interp.get_signature_list()
    if signatures:
        runner = interp.get_signature_runner(next(iter(signatures)))
        keys["inputs"] = {d["index"]: k for k, d in runner.get_input_details().items()}
        keys["outputs"] = {d["index"]: k for k, d in runner.get_output_details().items()}

    def tensor(d: dict[str, Any], side: str) -> dict[str, Any]:
        scale, zero_point = d["quantization"]
        return {
            "name": d["name"],
            "index": int(d["index"]),
            "signature_key": keys[side].get(d["index"]),
            "shape": [int(x) for x in d["shape_signature"]],
            "dtype": d["dtype"].__name__,
            "scale": float(scale),
            "zero_point": int(zero_point),
        }

    return {
        "inputs": [tensor(d, "inputs") for d in interp.get_input_details()],
        "outputs": [tensor(d, "outputs") for d in interp.get_output_details()],
    }


@dataclass(frozen=True)
class Strategy:
    """One way to run onnx2tf: a name, the command-line switches it stands for (for people),
    and the keyword arguments of ``onnx2tf.convert`` it sets (given the input names and shapes)."""

    name: str
    about: str
    kwargs: Callable[[dict[str, list[int]]], dict[str, Any]]

    def switches(self, shapes: dict[str, list[int]]) -> str:
        return describe(self.kwargs(shapes))


def describe(kwargs: dict[str, Any]) -> str:
    """``onnx2tf.convert`` keyword arguments as the command-line switches they stand for."""
    return " ".join(_SWITCH[k](v) for k, v in kwargs.items() if k in _SWITCH) or "none"


def _fixed(shapes: dict[str, list[int]]) -> dict[str, Any]:
    out: dict[str, Any] = {"batch_size": 1}
    if shapes:
        out["overwrite_input_shape"] = [f"{n}:{','.join(map(str, d))}" for n, d in shapes.items()]
    return out


_PSEUDO = ["Erf", "GeLU", "HardSwish", "LeakyReLU", "PReLU", "Power", "Neg", "Abs", "GatherND"]
_SWITCH: dict[str, Callable[[Any], str]] = {
    "batch_size": lambda v: f"-b {v}",
    "overwrite_input_shape": lambda v: "-ois " + " ".join(v),
    "not_use_onnxsim": lambda v: "-nuo",
    "replace_to_pseudo_operators": lambda v: "-rtpo " + " ".join(v),
    "disable_group_convolution": lambda v: "-dgc",
    "enable_batchmatmul_unfold": lambda v: "-ebu",
    "disable_strict_mode": lambda v: "-dsm",
    "keep_shape_absolutely_input_names": lambda v: "-kat " + " ".join(v),
    "enable_rnn_unroll": lambda v: "-eru",
}
# Recurrent ops: onnx2tf writes them as Keras RNN loops, which TensorFlow's converter leaves as
# TensorList ops that only the Flex delegate runs (LiteRT refuses the model). Unrolled over the
# model's fixed sequence length they are built-in ops.
RNN_OPS = frozenset({"LSTM", "GRU", "RNN"})


def has_rnn(model: Path) -> bool:
    """Whether the ONNX model at ``model`` has a recurrent op (in any subgraph)."""
    import onnx

    def walk(graph: Any) -> bool:
        for node in graph.node:
            if node.op_type in RNN_OPS:
                return True
            if any(walk(a.g) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH):
                return True
        return False

    return walk(onnx.load(str(model), load_external_data=False).graph)


# Ops TensorFlow converts to Select TensorFlow ("Flex") ops, which LiteRT and tflite-runtime do
# not run: every strategy writes them as onnx2tf's pseudo ops (built-in TFLite ops). torch.onnx
# exports GELU with Erf (BERT, MiniLM and other transformer encoders).
# (onnx2tf's Python API compares the names in lower case; only its command line lowers them.)
_ALWAYS_PSEUDO = ["erf"]


def _no_flex(s: dict[str, list[int]]) -> dict[str, Any]:
    return {"replace_to_pseudo_operators": _ALWAYS_PSEUDO}


STRATEGIES = (
    Strategy("default", "onnx2tf's defaults (Erf as a pseudo op)", _no_flex),
    Strategy("fixed-shapes", "batch and input shapes fixed", lambda s: {**_no_flex(s), **_fixed(s)}),
    Strategy(
        "no-onnxsim",
        "fixed shapes, without onnx2tf's own onnxsim pass",
        lambda s: {**_no_flex(s), **_fixed(s), "not_use_onnxsim": True},
    ),
    Strategy(
        "pseudo-ops",
        "fixed shapes; pseudo ops, separable instead of group convolutions, unfolded BatchMatMul",
        lambda s: {
            **_fixed(s),
            "replace_to_pseudo_operators": [op.lower() for op in _PSEUDO],
            "disable_group_convolution": True,
            "enable_batchmatmul_unfold": True,
        },
    ),
    Strategy(
        "no-strict",
        "fixed shapes, onnx2tf's strict transposition checks off",
        lambda s: {**_no_flex(s), **_fixed(s), "disable_strict_mode": True},
    ),
    Strategy(
        "keep-shapes",
        "fixed shapes, inputs kept in their ONNX layout",
        lambda s: {**_no_flex(s), **_fixed(s), "keep_shape_absolutely_input_names": list(s)},
    ),
)
_NODE = re.compile(r"onnx_op_name:\s*(?P<node>\S+)")


class _Tee(io.TextIOBase):
    """Passes writes through to ``stream`` and keeps the last lines (what onnx2tf printed for
    the current attempt, to find the node it failed at)."""

    def __init__(self, stream: Any, keep: int = 400) -> None:
        self.stream, self.keep, self._part = stream, keep, ""
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.stream.write(text)
        *done, self._part = (self._part + text).split("\n")
        self.lines = (self.lines + done)[-self.keep :]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def reset(self) -> None:
        self.lines, self._part = [], ""


def failed_node(lines: list[str]) -> str | None:
    """The ONNX node onnx2tf's error names (``onnx_op_name: NAME``), the last one printed."""
    for line in reversed(lines):
        m = _NODE.search(line)
        if m:
            return m["node"]
    return None


def convert(
    model: Path,
    out_dir: Path,
    calibration: list[list[str]],
    shapes: dict[str, list[int]] | None = None,
    strategies: list[str] | None = None,
) -> dict[str, Any]:
    """Run onnx2tf with each strategy in turn until one works; return the result object.
    Raises :class:`ConvertFailure` (of the last attempt, with all ``attempts``)."""
    try:
        import onnx2tf
        import tensorflow as tf
    except Exception as exc:
        why = f"onnx2tf does not import here: {type(exc).__name__}: {exc}"
        raise ConvertFailure("toolchain", why) from exc

    shapes = shapes or {}
    chosen = [s for s in STRATEGIES if strategies is None or s.name in strategies]
    pristine = model.with_name(model.stem + ".pristine.onnx")  # onnx2tf rewrites its input
    shutil.copyfile(model, pristine)
    say(f"converting with onnx2tf {package_version('onnx2tf')} (TensorFlow {tf.__version__})")
    if calibration:
        say("float32, float16 and full-integer INT8 (per-channel, int8 inputs and outputs) will be made")
    attempts: list[dict[str, Any]] = []
    tee = _Tee(sys.stdout)
    unroll = {"enable_rnn_unroll": True} if has_rnn(model) else {}
    if unroll:
        say("the model has recurrent ops: every strategy unrolls them (-eru)")
    for i, strategy in enumerate(chosen, 1):
        kwargs = {**strategy.kwargs(shapes), **unroll}
        switches = describe(kwargs)
        # Read by compilers.tflite_arm: a converter that dies in a strategy is run again from the next.
        say(f"trying strategy {i}/{len(chosen)} {strategy.name}: {strategy.about} ({switches})")
        shutil.copyfile(pristine, model)
        shutil.rmtree(out_dir, ignore_errors=True)
        tee.reset()
        try:
            with contextlib.redirect_stdout(tee):
                files = _convert_once(onnx2tf, model, out_dir, calibration, kwargs)
        except ConvertFailure as exc:
            attempt = {
                "strategy": strategy.name,
                "switches": switches,
                "error": str(exc).splitlines()[0][:300],
            }
            node = failed_node(tee.lines)
            if node:
                attempt["node"] = node
            attempts.append(attempt)
            if exc.kind != "conversion" or i == len(chosen):
                exc.extra["attempts"] = attempts
                raise
            say(f"strategy {strategy.name} failed: {attempt['error']}")
            continue
        say("reading the converted models' inputs and outputs")
        return {
            "files": files,
            "io": {kind: io_details(out_dir / name) for kind, name in files.items()},
            "onnx2tf_version": package_version("onnx2tf"),
            "tensorflow_version": tf.__version__,
            "strategy": strategy.name,
            "switches": switches,
            "attempts": attempts,
        }
    raise ConvertFailure("conversion", "no strategy was chosen", attempts=attempts)


def _stage(model: Path, out_dir: Path) -> str:
    """``quantization`` when onnx2tf failed after writing the float32 model (the INT8 calibration
    failed: no other strategy converts differently), else ``conversion``."""
    return "quantization" if (out_dir / f"{model.stem}{KINDS['float32']}").is_file() else "conversion"


def channel_first(path: Path) -> str:
    """The channel-last calibration file ``path`` moved back to channel-first (``-kat`` keeps the
    inputs in their ONNX layout, and onnx2tf then calibrates in that layout); its new path."""
    import numpy as np

    arr = np.load(path)
    if arr.ndim < 3:
        return str(path)
    out = path.with_name(path.stem + ".nchw.npy")
    np.save(out, np.ascontiguousarray(np.moveaxis(arr, -1, 1)))
    return str(out)


def _convert_once(
    onnx2tf: Any, model: Path, out_dir: Path, calibration: list[list[str]], extra: dict[str, Any]
) -> dict[str, str]:
    """One onnx2tf run; the files made by kind. Raises :class:`ConvertFailure`."""
    int8 = bool(calibration)
    keep = bool(extra.get("keep_shape_absolutely_input_names"))
    calib: list[list[Any]] = [
        [name, channel_first(Path(path)) if keep else path, float(mean), float(std)]
        for name, path, mean, std in calibration
    ]
    try:
        onnx2tf.convert(
            input_onnx_file_path=str(model),
            output_folder_path=str(out_dir),
            output_integer_quantized_tflite=int8,
            quant_type="per-channel",
            custom_input_op_name_np_data_path=calib or None,
            input_quant_dtype="int8",
            output_quant_dtype="int8",
            verbosity="info",
            **extra,
        )
    except ModuleNotFoundError as exc:
        # onnx2tf looks up an op's converter as the module onnx2tf.ops.<OpType>.
        prefix = "onnx2tf.ops."
        if exc.name and exc.name.startswith(prefix):
            op = exc.name[len(prefix) :]
            raise ConvertFailure("unsupported_op", f"onnx2tf has no converter for op {op}", op=op) from exc
        raise ConvertFailure("conversion", f"{type(exc).__name__}: {exc}") from exc
    except SystemExit as exc:
        # onnx2tf reports many problems by logging an ERROR line and calling sys.exit(1).
        raise ConvertFailure(_stage(model, out_dir), f"onnx2tf stopped (exit status {exc.code})") from exc
    except Exception as exc:
        raise ConvertFailure(_stage(model, out_dir), f"{type(exc).__name__}: {exc}") from exc

    files: dict[str, str] = {}
    for kind, suffix in KINDS.items():
        path = out_dir / f"{model.stem}{suffix}"
        if path.is_file():
            files[kind] = path.name
    wanted = ["float32", "float16"] + (["full_integer_quant"] if int8 else [])
    missing = [k for k in wanted if k not in files]
    if missing:
        # onnx2tf only warns when a quantized flavour fails; its log says why.
        raise ConvertFailure(
            "quantization" if "float32" in files else "conversion",
            f"onnx2tf finished without the {', '.join(missing)} model",
        )
    return files


MIXED_KIND = "mixed_quant"
DYNAMIC_KIND = "dynamic_range_quant"
RANK_SAMPLES = 64
_VERIFY_PREFIX = "NumericVerify/"


def _rel_noise(float_values: Any, quant_values: Any, scale: float, zero_point: int) -> float:
    """Noise power of the dequantized tensor relative to the float one (a debugger metric)."""
    import numpy as np

    f = np.asarray(float_values, np.float64)
    d = (np.asarray(quant_values, np.float64) - zero_point) * scale
    return float(np.sum((f - d) ** 2) / max(float(np.sum(f**2)), 1e-12))


def _graph(path: Path) -> list[tuple[str, list[str], list[str]]]:
    """(op, input tensor names, output tensor names) of each op of a .tflite file."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path))
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    return [
        (d["op_name"], [names[i] for i in d["inputs"] if i >= 0], [names[i] for i in d["outputs"] if i >= 0])
        for d in interp._get_ops_details()
    ]


def with_float_producers(graph: list[tuple[str, list[str], list[str]]], nodes: list[str]) -> list[str]:
    """``nodes`` plus, one level up, each op whose outputs only ``nodes``' ops read: a float op
    fed by an INT8 producer would still get the tensor that hurt it rounded to 8 bits."""
    chosen = list(dict.fromkeys(nodes))
    producer = {out: (ins, outs) for _op, ins, outs in graph for out in outs}
    consumers: dict[str, set[str]] = {}
    for _op, ins, outs in graph:
        for t in ins:
            consumers.setdefault(t, set()).update(outs)
    for name in list(chosen):
        for t in producer.get(name, ([], []))[0]:
            if t not in producer or t in chosen:
                continue
            outs = producer[t][1]
            if all(consumers.get(o, set()) <= set(chosen) | {name} and consumers.get(o) for o in outs):
                chosen.append(t)
    return chosen


JOIN_RANGE_RATIO = 16.0  # compilers.mixed.JOIN_RANGE_RATIO (this file runs in the converter's venv)


def graph_joins(
    graph: list[tuple[str, list[str], list[str]]], peaks: dict[str, float], ratio: float = JOIN_RANGE_RATIO
) -> dict[str, int]:
    """compilers.mixed.mixed_range_joins over a .tflite op list (pure): each op output that is
    a CONCATENATION of tensors whose largest magnitudes differ by more than ``ratio``, or that
    follows one to the outputs, with the size of the smallest such join and its followers."""
    consumers: dict[str, list[tuple[str, list[str], list[str]]]] = {}
    for op in graph:
        for t in op[1]:
            consumers.setdefault(t, []).append(op)
    out: dict[str, int] = {}
    for op in graph:
        name, ins, _outs = op
        found = [peaks[t] for t in ins if t in peaks]
        if name != "CONCATENATION" or len(found) < 2 or max(found) <= ratio * max(min(found), 1e-12):
            continue
        closure: list[str] = []
        seen: set[int] = set()
        stack = [op]
        while stack:
            cur = stack.pop()
            if id(cur) in seen:
                continue
            seen.add(id(cur))
            closure += [t for t in cur[2] if t not in closure]
            for t in cur[2]:
                stack.extend(consumers.get(t, []))
        for t in closure:
            out[t] = min(out.get(t, len(closure)), len(closure))
    return out


def tensor_peaks(path: Path, feeds: list[list[Any]]) -> dict[str, float]:
    """The largest magnitude of every float tensor of the .tflite model at ``path`` over
    ``feeds`` (each a list of input arrays in the model's input order)."""
    import numpy as np
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inputs = interp.get_input_details()
    peaks: dict[str, float] = {}
    for feed in feeds:
        for d, arr in zip(inputs, feed, strict=True):
            interp.set_tensor(d["index"], np.asarray(arr, d["dtype"]))
        interp.invoke()
        for t in interp.get_tensor_details():
            if t["dtype"] != np.float32:
                continue
            try:
                v = interp.get_tensor(t["index"])
            except ValueError:  # a tensor the interpreter did not keep
                continue
            if v.size:
                peaks[t["name"]] = max(peaks.get(t["name"], 0.0), float(np.max(np.abs(v))))
    return peaks


def quantize_mixed(
    out_dir: Path, stem: str, calibration: list[list[str]], float_nodes: list[str], rank: bool
) -> dict[str, Any]:
    """Requantize onnx2tf's saved model in ``out_dir`` with TensorFlow's QuantizationDebugger:
    with ``float_nodes``, write ``<stem>_mixed_quant.tflite`` with those ops (and the producers
    only they read) kept float; with ``rank``, rank every layer. Returns the result keys to add.
    Raises :class:`ConvertFailure`."""
    import numpy as np
    import tensorflow as tf

    if not calibration:
        raise ConvertFailure("conversion", "mixed precision needs --calibration")
    float32 = out_dir / f"{stem}{KINDS['float32']}"
    order = io_details(float32, tf.lite.Interpreter)["inputs"]
    data: list[Any] = []
    for inp in order:
        entry = next(
            (c for c in calibration if c[0] in (inp["signature_key"], inp["name"]) or c[0] in inp["name"]),
            None,
        )
        if entry is None:
            raise ConvertFailure("conversion", f"no calibration data for input {inp['name']}")
        arr = np.load(entry[1]).astype(np.float32)
        data.append((arr - float(entry[2])) / float(entry[3]))
    count = min(len(a) for a in data)

    def samples() -> Any:
        for i in range(min(count, RANK_SAMPLES)):
            yield [a[i : i + 1] for a in data]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(out_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    graph = _graph(float32)
    nodes = with_float_producers(graph, float_nodes) if float_nodes else []
    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"rel_noise": _rel_noise},
        denylisted_nodes=nodes or None,
        fully_quantize=False,  # float32 inputs and outputs: float ops sit at the edges too
    )
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=samples, debug_options=options
    )
    extra: dict[str, Any] = {}
    if rank:
        say("ranking layers by quantization noise (TensorFlow's QuantizationDebugger)")
        debugger.run()
        # The debugger names each check NumericVerify/<tensor>[n]:<index>.
        stats = {k.removeprefix(_VERIFY_PREFIX): v for k, v in debugger.layer_statistics.items()}
        noise = {}
        for _op, _ins, outs in graph:
            for out in outs:
                for key, v in stats.items():
                    if key.startswith(out) and re.fullmatch(r"\d*:\d+", key[len(out) :]):
                        noise[out] = float(v["rel_noise"])
        try:
            joins = graph_joins(
                graph, tensor_peaks(float32, [[a[i : i + 1] for a in data] for i in range(min(count, 4))])
            )
        except Exception as exc:  # the ranking stands without it
            say(f"could not read the float model's tensor ranges: {exc}")
            joins = {}
        costs = []
        for op, ins, outs in graph:
            for out in outs:
                if out not in noise:
                    continue
                before = max((noise[t] for t in ins if t in noise), default=0.0)
                costs.append(
                    {"node": out, "op": op, "cost": max(0.0, noise[out] - before), "join": joins.get(out, 0)}
                )
        extra["layer_costs"] = sorted(costs, key=lambda c: -c["cost"])
    if nodes:
        say(f"INT8 with {len(nodes)} op(s) kept in float")
        path = out_dir / f"{stem}_{MIXED_KIND}.tflite"
        path.write_bytes(debugger.get_nondebug_quantized_model())
        extra["float_nodes"] = nodes
        extra["mixed"] = {"file": path.name, "io": io_details(path)}
    return extra


def quantize_dynamic_range(out_dir: Path, stem: str) -> dict[str, Any]:
    """Write ``<stem>_dynamic_range_quant.tflite`` from onnx2tf's saved model in ``out_dir``:
    dynamic-range quantization (int8 weights; float activations, quantized on each run where a
    kernel takes them). Returns the result's ``file`` and ``io``. Raises :class:`ConvertFailure`."""
    import tensorflow as tf

    if not (out_dir / "saved_model.pb").is_file():
        raise ConvertFailure("conversion", "onnx2tf left no saved model to quantize")
    say("dynamic-range INT8 (int8 weights, activations quantized on each run)")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(out_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    path = out_dir / f"{stem}_{DYNAMIC_KIND}.tflite"
    try:
        path.write_bytes(converter.convert())
    except Exception as exc:
        raise ConvertFailure(
            "quantization", f"dynamic-range quantization failed: {type(exc).__name__}: {exc}"
        ) from exc
    return {"file": path.name, "io": io_details(path)}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--result", type=Path, required=True)
    p.add_argument(
        "--calibration",
        nargs=4,
        action="append",
        default=[],
        metavar=("INPUT", "NPY", "MEAN", "STD"),
    )
    p.add_argument("--input-shape", nargs=2, action="append", default=[], metavar=("INPUT", "DIMS"))
    p.add_argument("--strategies", default=None, help="comma-separated names (default: all, in order)")
    p.add_argument("--mixed-float-node", action="append", default=[], metavar="TENSOR")
    p.add_argument("--rank-layers", action="store_true")
    p.add_argument("--dynamic-range", action="store_true")
    p.add_argument(
        "--converted",
        type=Path,
        default=None,
        metavar="DIR",
        help="an earlier run's output (DIR/out and DIR/result.json) of the same model: no onnx2tf "
        "run, only the mixed-precision or ranking work on its saved model",
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    # onnx2tf starts `onnxsim` by name: make this environment's scripts findable.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    refuse_network()
    workdir = Path.cwd()
    result: dict[str, Any]
    status = 0
    try:
        place_sample_calibration(workdir)
        shapes = {name: [int(d) for d in dims.split(",")] for name, dims in args.input_shape}
        strategies = args.strategies.split(",") if args.strategies else None
        if args.converted is not None:
            say(f"reusing the conversion in {args.converted}")
            shutil.copytree(args.converted / "out", args.output_dir, dirs_exist_ok=True)
            result = json.loads((args.converted / "result.json").read_text())
            result["reused"] = True
        else:
            result = {
                "ok": True,
                **convert(args.model, args.output_dir, args.calibration, shapes, strategies),
            }
        if args.mixed_float_node or args.rank_layers:
            extra = quantize_mixed(
                args.output_dir, args.model.stem, args.calibration, args.mixed_float_node, args.rank_layers
            )
            mixed = extra.pop("mixed", None)
            if mixed is not None:
                result["files"][MIXED_KIND] = mixed["file"]
                result["io"][MIXED_KIND] = mixed["io"]
            result.update(extra)
        if args.dynamic_range:
            made = quantize_dynamic_range(args.output_dir, args.model.stem)
            result["files"][DYNAMIC_KIND] = made["file"]
            result["io"][DYNAMIC_KIND] = made["io"]
    except ConvertFailure as exc:
        traceback.print_exc()
        result = {"ok": False, "error_kind": exc.kind, "error": str(exc), **exc.extra}
        status = EXIT_TOOLCHAIN if exc.kind == "toolchain" else EXIT_FAILED
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "error_kind": "conversion", "error": f"{type(exc).__name__}: {exc}"}
        status = EXIT_FAILED
    result["seconds"] = round(time.monotonic() - started, 2)
    tmp = args.result.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.result)
    say("done" if status == 0 else f"failed: {result['error']}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
