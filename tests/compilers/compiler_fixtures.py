"""Models and sample data for the compiler tests (imported by conftest and the tests).

``tiny_cnn`` is built here with ``onnx.helper`` (fast, any shape we need); ``digits`` is the
example model from ``examples/digits`` (the acceptance figures are measured on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


@dataclass(frozen=True)
class ModelFiles:
    model: Path
    calibration: Path
    validation: Path


def cnn_model(
    classes: int = 4,
    channels: int = 3,
    size: int = 8,
    seed: int = 0,
    batch: int | str = "batch",
    extra_nodes: list[onnx.NodeProto] | None = None,
    opsets: tuple[tuple[str, int], ...] = (),
) -> onnx.ModelProto:
    """Conv(3x3) → Relu → GlobalAveragePool → Flatten → Gemm: a small image classifier whose
    class scores are well separated (so INT8 keeps the arg-max)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, size=(16, channels, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, size=16).astype(np.float32)
    fc = rng.normal(0, 1.0, size=(classes, 16)).astype(np.float32)
    fb = np.zeros(classes, np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["scores"], name="head", transB=1),
        *(extra_nodes or []),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, classes])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fc, "fc"), (fb, "fb"))],
    )
    imports = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, v) for d, v in opsets)]
    model = helper.make_model(graph, opset_imports=imports, producer_name="edgefleet-tests")
    model.ir_version = 8
    return model


def images(n: int, channels: int = 3, size: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n, channels, size, size)).astype(np.float32)


def write_model_files(root: Path, model: onnx.ModelProto, channels: int = 3, size: int = 8) -> ModelFiles:
    root.mkdir(parents=True, exist_ok=True)
    files = ModelFiles(root / "tiny.onnx", root / "cal.npz", root / "val.npz")
    onnx.save(model, files.model)
    np.savez(files.calibration, image=images(48, channels, size, seed=1))
    np.savez(files.validation, x=images(40, channels, size, seed=2))
    return files


def leftovers(parent: Path, name: str) -> list[str]:
    """Anything a compile of ``parent/name`` left behind (the bundle or its staging dirs)."""
    return sorted(p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}."))


def require_tflite() -> None:
    """Skip unless the tflite converter toolchain is installed and LiteRT runs here."""
    import pytest

    from agent.runtimes.litert import LiteRTAdapter
    from compilers import ToolchainError, toolchains

    try:
        toolchains.python_for("tflite")
    except ToolchainError:
        pytest.skip("tflite toolchain not installed: run `edgectl toolchains install tflite`")
    if LiteRTAdapter.unavailable_reason():
        pytest.skip(f"LiteRT can't run here: {LiteRTAdapter.unavailable_reason()}")
