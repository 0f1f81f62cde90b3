"""Convert one ONNX model to TFLite with onnx2tf. Runs in the *converter* environment, not EdgeFleet's.

:mod:`compilers.tflite_arm` starts this file as ``<converter python> -I -u _tflite_convert.py ...``:
it imports only the standard library, numpy and onnx2tf (with its TensorFlow), never EdgeFleet, so
the converter's pinned, older stack never meets the project's. Usage::

    _tflite_convert.py --model WORK/model.onnx --output-dir WORK/out --result WORK/result.json \\
        [--calibration INPUT_NAME CALIB_NHWC.npy MEAN STD]...

- ``--model`` is a *copy* of the source: onnx2tf (through onnxsim) rewrites it in place.
- Every ``--calibration`` array is float32 in the layout the TFLite model takes (NHWC for 4-D
  image inputs, unchanged for 2-D ones); onnx2tf feeds ``(x - MEAN) / STD`` to the calibrator, so
  pass ``0 1`` when the samples already are model inputs. With calibration the full-integer INT8
  model (int8 inputs and outputs, per-channel weights) is made as well; float32 and float16 always
  are.
- The result is one JSON object written to ``--result`` (onnx2tf owns stdout): ``ok``, ``files``
  (kind -> file name in the output dir, kinds ``float32``, ``float16``, ``full_integer_quant``),
  ``io`` (each file's input/output tensors as this environment's TFLite interpreter reads them),
  ``onnx2tf_version``, ``tensorflow_version``, ``seconds``; on failure ``ok`` is false and
  ``error_kind`` (``toolchain``, ``unsupported_op``, ``conversion``) and ``error`` say why. The exit
  status is 0 on success, 2 when the toolchain itself is broken, 1 otherwise.
- Progress lines for the operator start with ``[edgefleet]``.

Works offline: onnx2tf fetches a sample calibration file for some 4-D inputs even when calibration
is given, so a stand-in of that name is placed in the working directory first; any remaining
attempt to open a network connection is refused (an audit hook) instead of hanging.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import traceback
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


def convert(model: Path, out_dir: Path, calibration: list[list[str]]) -> dict[str, Any]:
    """Run onnx2tf and return the result object. Raises :class:`ConvertFailure`."""
    try:
        import onnx2tf
        import tensorflow as tf
    except Exception as exc:
        why = f"onnx2tf does not import here: {type(exc).__name__}: {exc}"
        raise ConvertFailure("toolchain", why) from exc

    int8 = bool(calibration)
    calib = [[name, path, float(mean), float(std)] for name, path, mean, std in calibration]
    say(f"converting with onnx2tf {package_version('onnx2tf')} (TensorFlow {tf.__version__})")
    if int8:
        say("float32, float16 and full-integer INT8 (per-channel, int8 inputs and outputs) will be made")
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
        raise ConvertFailure("conversion", f"onnx2tf stopped (exit status {exc.code})") from exc
    except Exception as exc:
        raise ConvertFailure("conversion", f"{type(exc).__name__}: {exc}") from exc

    files: dict[str, str] = {}
    for kind, suffix in KINDS.items():
        path = out_dir / f"{model.stem}{suffix}"
        if path.is_file():
            files[kind] = path.name
    wanted = ["float32", "float16"] + (["full_integer_quant"] if int8 else [])
    missing = [k for k in wanted if k not in files]
    if missing:
        # onnx2tf only warns when a quantized flavour fails; its log says why.
        raise ConvertFailure("conversion", f"onnx2tf finished without the {', '.join(missing)} model")
    say("reading the converted models' inputs and outputs")
    return {
        "files": files,
        "io": {kind: io_details(out_dir / name) for kind, name in files.items()},
        "onnx2tf_version": package_version("onnx2tf"),
        "tensorflow_version": tf.__version__,
    }


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
        result = {"ok": True, **convert(args.model, args.output_dir, args.calibration)}
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
