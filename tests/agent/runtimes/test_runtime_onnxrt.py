"""The ONNX Runtime adapter: loads a bundle's entrypoint and runs it with source-form tensors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.contracts.manifest import FileEntry, Manifest, Quantization, TensorSpec
from agent.runtimes import RuntimeLoadError, get_runtime, load_bundle
from agent.runtimes.onnxrt import OnnxRuntimeAdapter, providers, session_options

W = np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]], np.float32)  # x [N,3] @ W -> [N,2]


def _model(path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(W, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def _manifest(inputs: tuple[TensorSpec, ...] | None = None, entry: str = "model.onnx") -> Manifest:
    return Manifest(
        target="onnx-x86",
        precision="fp32",
        runtime="onnxruntime",
        runtime_version=">=1.16",
        entrypoint=entry,
        source_sha256="0" * 64,
        inputs=inputs or (TensorSpec("x", "float32", (-1, 3)),),
        outputs=(TensorSpec("y", "float32", (-1, 2)),),
        files=(FileEntry(entry, "0" * 64, 0),),
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    _model(tmp_path / "model.onnx")
    return tmp_path


def test_registered_and_available() -> None:
    assert get_runtime("onnxruntime") is OnnxRuntimeAdapter
    assert OnnxRuntimeAdapter.unavailable_reason() is None
    assert OnnxRuntimeAdapter.version()
    assert providers()[-1] == "CPUExecutionProvider"


def test_infer_runs_the_model(bundle: Path) -> None:
    adapter = load_bundle(bundle, _manifest(), threads=1)
    x = np.array([[1, 2, 3], [0, 0, 1]], np.float32)
    out = adapter.infer({"x": x})
    np.testing.assert_allclose(out["y"], x @ W, rtol=1e-6)
    assert out["y"].dtype == np.float32
    adapter.close()


def test_inputs_are_converted_to_the_source_dtype(bundle: Path) -> None:
    adapter = OnnxRuntimeAdapter.load(bundle, _manifest())
    out = adapter.infer({"x": np.array([[1, 2, 3]], np.float64)})
    np.testing.assert_allclose(out["y"], [[2.0, 6.0]])


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({}, "input 'x' is missing"),
        ({"x": np.zeros((2, 3), np.float32), "z": np.zeros(1)}, "unknown input 'z'"),
        ({"x": np.zeros((2, 4), np.float32)}, "input 'x': dim 1 must be 3"),
        ({"x": np.zeros((3,), np.float32)}, "input 'x': expected rank 2"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_tensor(bundle: Path, feed: dict, message: str) -> None:
    adapter = OnnxRuntimeAdapter.load(bundle, _manifest())
    with pytest.raises(ValueError, match=message):
        adapter.infer(feed)


def test_quantized_input_mapping_is_applied(tmp_path: Path) -> None:
    # A compiled model that takes int8 "q" (= x / 0.5) and dequantizes it itself: the adapter
    # must quantize the client's float input as the manifest says before running.
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["xf"]),
            helper.make_node("MatMul", ["xf", "w"], ["y"]),
        ],
        "q",
        [helper.make_tensor_value_info("q", TensorProto.INT8, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [
            numpy_helper.from_array(np.array(0.5, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "zp"),
            numpy_helper.from_array(W, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    spec = TensorSpec("x", "float32", (-1, 3), model_name="q", quantization=Quantization(0.5, 0, "int8"))
    adapter = OnnxRuntimeAdapter.load(tmp_path, _manifest((spec,)))
    x = np.array([[1.0, 2.0, 3.2]], np.float32)  # 3.2 quantizes to 3.0
    np.testing.assert_allclose(adapter.infer({"x": x})["y"], np.array([[1.0, 2.0, 3.0]]) @ W)


def test_missing_or_corrupt_model_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError, match="no such file"):
        OnnxRuntimeAdapter.load(tmp_path, _manifest())
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(RuntimeLoadError, match="ONNX Runtime refused it"):
        OnnxRuntimeAdapter.load(tmp_path, _manifest())


def test_manifest_naming_a_tensor_the_model_lacks(bundle: Path) -> None:
    spec = TensorSpec("x", "float32", (-1, 3), model_name="pixels")
    with pytest.raises(RuntimeLoadError, match="no input 'pixels'"):
        OnnxRuntimeAdapter.load(bundle, _manifest((spec,)))


def test_tensorrt_adapter_reports_why_not_here() -> None:
    from agent.runtimes.tensorrt import TensorRTAdapter

    reason = TensorRTAdapter.unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are present")
    assert "tensorrt is not installed" in reason or "no CUDA GPU" in reason
    assert TensorRTAdapter.version() is None or reason.startswith("no CUDA GPU")


def test_a_model_that_misdeclares_its_output_shape_runs_without_a_warning_per_request(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Exported models often declare an output shape that differs from the one they compute;
    # where shape inference can't correct it, ONNX Runtime warns on every run
    # (VerifyOutputSizes): a log line per request. Here y's rank is the runtime value of s.
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["t"], name="mm"),
            helper.make_node("Reshape", ["t", "s"], ["y"], name="reshape"),
        ],
        "mm",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("s", TensorProto.INT64, ["k"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(W, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    inputs = (TensorSpec("x", "float32", (-1, 3)), TensorSpec("s", "int64", (-1,)))
    adapter = load_bundle(tmp_path, _manifest(inputs), threads=1)
    capfd.readouterr()
    for _ in range(3):
        out = adapter.infer({"x": np.ones((2, 3), np.float32), "s": np.array([2, 1, 2], np.int64)})
    assert out["y"].shape == (2, 1, 2)
    assert "VerifyOutputSizes" not in capfd.readouterr().err


_IDLE_BURN = """
import resource, sys, time
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
from agent.runtimes.onnxrt import session_options

w = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i - 1}", "w"], [f"h{i}"]) for i in range(8)]
graph = helper.make_graph(
    nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 512])],
    [helper.make_tensor_value_info("h7", TensorProto.FLOAT, [256, 512])], [numpy_helper.from_array(w, "w")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
spinning = sys.argv[1] == "true"
options = session_options(2, spinning=spinning)
s = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
x = np.ones((256, 512), np.float32)
for _ in range(5):
    s.run(None, {"x": x})
r = resource.getrusage(resource.RUSAGE_SELF)
before = r.ru_utime + r.ru_stime
time.sleep(0.3)
r = resource.getrusage(resource.RUSAGE_SELF)
print(r.ru_utime + r.ru_stime - before)
"""


def _cpu_after_runs(spinning: bool) -> float:
    """CPU seconds a fresh process burns in the 0.3 s after five two-thread runs."""
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", _IDLE_BURN, "true" if spinning else "false"],
        capture_output=True, text=True, check=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""},
    )  # fmt: skip
    return float(out.stdout.strip())


def test_threads_stop_spinning_when_a_run_returns_unless_told_to_go_on() -> None:
    # spinning=False (the agent's default): the threads spin during a run, and stop when it
    # returns, so a device waiting between requests burns nothing; ONNX Runtime's own default
    # (spinning=True) goes on spinning for tens of milliseconds after each run.
    assert _cpu_after_runs(False) < 0.012
    assert _cpu_after_runs(True) > 0.012


def test_session_options_spin_during_runs_either_way() -> None:
    for spinning, stop in ((False, "1"), (True, "0")):
        so = session_options(2, spinning=spinning)
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
        assert so.get_session_config_entry("session.force_spinning_stop") == stop
