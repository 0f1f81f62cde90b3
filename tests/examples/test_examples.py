"""The example models: the committed digits files hold what they claim, and both scripts rebuild them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
MOBILENET_BUILD = ROOT / "examples" / "mobilenet" / "build.py"
ALLOWED_DIGITS_OPS = {"Conv", "Relu", "MaxPool", "Flatten", "Reshape", "Gemm"}
NEEDS_TORCH = "torch is not installed (pip install torch) — needed to retrain the example"
NEEDS_SKLEARN = "scikit-learn is not installed (pip install scikit-learn) — needed to retrain the example"

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")


def session(path: Path) -> ort.InferenceSession:
    """A CPU ONNX Runtime session for the model at ``path``."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def io_signature(path: Path) -> tuple[list[tuple[str, list[object]]], list[tuple[str, list[object]]]]:
    """(inputs, outputs) of the model at ``path`` as (name, shape) pairs, as ONNX Runtime reports them."""
    sess = session(path)
    return (
        [(i.name, list(i.shape)) for i in sess.get_inputs()],
        [(o.name, list(o.shape)) for o in sess.get_outputs()],
    )


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Arg-max class of the model at ``path`` for each row of ``x``."""
    (logits,) = session(path).run(["logits"], {"input": x})
    return np.argmax(logits, axis=1)


def run_script(script: Path, *args: str) -> None:
    """Run ``script`` with this interpreter; fail with its output if it exits non-zero."""
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"


def test_committed_digits_model_reaches_its_recorded_accuracy() -> None:
    heldout = np.load(DIGITS / "heldout.npz")
    x, y = heldout["x"], heldout["y"]
    assert x.shape == (360, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (360,) and y.dtype == np.int64
    assert x.min() >= 0.0 and x.max() <= 1.0

    accuracy = float(np.mean(predict(DIGITS / "digits_cnn.onnx", x) == y))
    metrics = json.loads((DIGITS / "metrics.json").read_text())
    assert accuracy >= 0.97
    assert metrics["heldout_samples"] == 360
    assert metrics["fp32_accuracy"] == pytest.approx(accuracy, abs=1e-9)


def test_committed_digits_model_signature_and_calibration() -> None:
    inputs, outputs = io_signature(DIGITS / "digits_cnn.onnx")
    assert len(inputs) == 1 and inputs[0][0] == "input" and inputs[0][1][1:] == [1, 8, 8]
    assert isinstance(inputs[0][1][0], str), "batch dim must be dynamic"
    assert len(outputs) == 1 and outputs[0][0] == "logits" and outputs[0][1][1:] == [10]

    calibration = np.load(DIGITS / "calibration.npz")
    assert list(calibration.keys()) == [inputs[0][0]]
    assert calibration["input"].shape == (256, 1, 8, 8) and calibration["input"].dtype == np.float32
    assert predict(DIGITS / "digits_cnn.onnx", calibration["input"][:3]).shape == (3,)


def test_committed_digits_model_uses_only_quantization_friendly_ops() -> None:
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
    model = onnx.load(str(DIGITS / "digits_cnn.onnx"))
    onnx.checker.check_model(model)
    assert {n.op_type for n in model.graph.node} <= ALLOWED_DIGITS_OPS
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17


def test_digits_pngs_decode_to_the_heldout_samples_with_preprocess_yaml() -> None:
    image = pytest.importorskip("PIL.Image", reason="Pillow is not installed (pip install pillow)")
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((DIGITS / "images" / "preprocess.yaml").read_text())
    assert (spec["layout"], spec["color"], spec["size"]) == ("NCHW", "grey", [8, 8])
    heldout = np.load(DIGITS / "heldout.npz")
    pngs = sorted((DIGITS / "images").glob("*.png"))
    model = DIGITS / "digits_cnn.onnx"
    assert len(pngs) == 20

    for png in pngs:
        index, label = (int(part) for part in png.stem.split("_"))
        pixels = np.asarray(image.open(png).convert("L"), dtype=np.float32)
        x = (pixels * spec["scale"] - spec["mean"][0]) / spec["std"][0]
        assert label == heldout["y"][index]
        np.testing.assert_allclose(x, heldout["x"][index, 0], atol=1 / 510 + 1e-6)
        from_png = predict(model, x[None, None].astype(np.float32))[0]
        assert from_png == predict(model, heldout["x"][index : index + 1])[0]


@pytest.mark.slow
def test_train_script_writes_a_valid_digits_model(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason=NEEDS_TORCH)
    pytest.importorskip("sklearn", reason=NEEDS_SKLEARN)
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
    run_script(DIGITS / "train.py", "--out", str(tmp_path), "--epochs", "2", "--seed", "1")

    model_path = tmp_path / "digits_cnn.onnx"
    onnx.checker.check_model(onnx.load(str(model_path)))
    inputs, outputs = io_signature(model_path)
    assert [(n, s[1:]) for n, s in inputs] == [("input", [1, 8, 8])]
    assert [(n, s[1:]) for n, s in outputs] == [("logits", [10])]

    heldout = np.load(tmp_path / "heldout.npz")
    np.testing.assert_array_equal(heldout["y"], np.load(DIGITS / "heldout.npz")["y"])
    assert predict(model_path, heldout["x"]).shape == (360,)
    assert np.load(tmp_path / "calibration.npz")["input"].shape == (256, 1, 8, 8)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["fp32_accuracy"] > 0.5
    assert len(list((tmp_path / "images").glob("*.png"))) == 20


@pytest.mark.slow
def test_mobilenet_build_script_gives_a_1000_class_model(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason=NEEDS_TORCH.replace("retrain", "build"))
    run_script(MOBILENET_BUILD, "--out", str(tmp_path))

    model_path = tmp_path / "mobilenetv2.onnx"
    inputs, outputs = io_signature(model_path)
    assert [(n, s[1:]) for n, s in inputs] == [("input", [3, 224, 224])]
    assert [n for n, _ in outputs] == ["logits"]
    calibration = np.load(tmp_path / "calibration.npz")
    assert list(calibration.keys()) == ["input"]
    assert calibration["input"].shape == (32, 3, 224, 224) and calibration["input"].dtype == np.float32

    (logits,) = session(model_path).run(["logits"], {"input": calibration["input"][:1]})
    assert logits.shape == (1, 1000)
    assert np.all(np.isfinite(logits)) and logits.std() > 0
