"""Target tflite-arm: op checks, calibration layout, tensor matching, the converter subprocess's
failures, and (slow, with the tflite toolchain) real onnx2tf conversions run through LiteRT.

The slow tests find the converter with ``compilers.toolchains.python_for("tflite")``: install it
with ``edgectl toolchains install tflite``, or point ``EDGEFLEET_TFLITE_PYTHON`` at a python that
has onnx2tf.
"""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.contracts.manifest import Manifest, TensorSpec
from agent.runtimes import load_bundle, verify_bundle_dir
from agent.runtimes.litert import LiteRTAdapter
from compilers import (
    CalibrationError,
    CompileError,
    CompileOptions,
    CompileReport,
    TargetError,
    ToolchainError,
    UnsupportedOpError,
    compile_model,
    tflite_arm,
    toolchains,
)
from compilers.base import CompileJob
from compilers.modelcheck import tensor_specs
from compilers.registry import get_target
from compilers.tflite_arm import TfliteArmTarget, describe, layout_fit, prepare_calibration
from device_profiles import load_profile
from tests.compilers.compiler_fixtures import ModelFiles, cnn_model

SKIP_REASON = "tflite toolchain not installed: run `edgectl toolchains install tflite`"
LITERT_MISSING = LiteRTAdapter.unavailable_reason()


@pytest.fixture
def no_toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEFLEET_TFLITE_PYTHON", raising=False)


@pytest.fixture(scope="module")
def converter() -> Path:
    try:
        return toolchains.python_for("tflite")
    except ToolchainError:
        pytest.skip(SKIP_REASON)


def job(
    path: Path, model: onnx.ModelProto, precision: str, calibration: dict[str, np.ndarray] | None
) -> CompileJob:
    ins, outs = tensor_specs(model, path)
    return CompileJob(path, load_profile("raspberry-pi-5"), precision, calibration, ins, outs)


def castlike_model() -> onnx.ModelProto:
    extra = [helper.make_node("CastLike", ["scores", "scores"], ["same"], name="castlike1")]
    return cnn_model(extra_nodes=extra)


# -- fast ---------------------------------------------------------------------------------------


def test_registered() -> None:
    t = get_target("tflite-arm")
    assert isinstance(t, TfliteArmTarget)
    assert (t.runtime, t.precisions) == ("litert", ("int8", "fp16", "fp32"))


def test_custom_domain_is_refused() -> None:
    extra = [helper.make_node("Fancy", ["scores"], ["out2"], name="fancy1", domain="com.example")]
    model = cnn_model(extra_nodes=extra, opsets=(("com.example", 1),))
    with pytest.raises(UnsupportedOpError) as err:
        TfliteArmTarget().check_ops(model)
    assert (err.value.op, err.value.node) == ("com.example.Fancy", "fancy1")
    assert "com.example.Fancy" in str(err.value) and "fancy1" in str(err.value)


def test_unsupported_op_refused_without_toolchain(no_toolchain: None) -> None:
    assert tflite_arm.supported_ops() is None  # falls back to the deny-list
    TfliteArmTarget().check_ops(cnn_model())
    with pytest.raises(UnsupportedOpError) as err:
        TfliteArmTarget().check_ops(castlike_model())
    assert (err.value.op, err.value.node) == ("CastLike", "castlike1")
    assert "can't take op CastLike (node 'castlike1')" in str(err.value)


def test_unsupported_op_refused_by_installed_onnx2tf(converter: Path) -> None:
    ops = tflite_arm.supported_ops()
    assert ops is not None and {"Conv", "Gemm", "Relu", "MaxPool"} <= ops and "CastLike" not in ops
    TfliteArmTarget().check_ops(cnn_model())
    with pytest.raises(UnsupportedOpError, match=r"CastLike \(node 'castlike1'\).*installed onnx2tf"):
        TfliteArmTarget().check_ops(castlike_model())


def test_int8_needs_calibration(tmp_path: Path, no_toolchain: None) -> None:
    model = cnn_model()
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(CalibrationError, match="INT8 for tflite-arm needs calibration"):
        TfliteArmTarget().compile(job(tmp_path / "m.onnx", model, "int8", None), tmp_path)


def test_missing_toolchain_says_how_to_install(tmp_path: Path, no_toolchain: None) -> None:
    model = cnn_model()
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ToolchainError) as err:
        TfliteArmTarget().compile(job(tmp_path / "m.onnx", model, "fp32", None), tmp_path)
    assert str(err.value) == "the tflite toolchain is not installed: run `edgectl toolchains install tflite`"


def test_unknown_precision(tmp_path: Path) -> None:
    model = cnn_model()
    with pytest.raises(TargetError, match="not 'int4'"):
        TfliteArmTarget().compile(job(tmp_path / "m.onnx", model, "int4", None), tmp_path)


def spec(name: str, shape: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(name=name, dtype="float32", shape=shape)


def test_calibration_goes_channel_last() -> None:
    image = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    meta = np.ones((2, 6))
    out = prepare_calibration(
        (spec("image", (-1, 3, 4, 5)), spec("meta", (-1, 6))), {"image": image, "meta": meta}
    )
    assert out["image"].shape == (2, 4, 5, 3) and out["image"].dtype == np.float32
    np.testing.assert_array_equal(out["image"], image.transpose(0, 2, 3, 1))
    assert out["meta"].shape == (2, 6)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "needs calibration"),
        ({"other": np.zeros((2, 3, 4, 5))}, "no calibration samples for input 'image'"),
        ({"image": np.zeros((2, 1, 4, 5))}, "dim 1 is 1, the model wants 3"),
        ({"image": np.zeros((3, 4, 5))}, "expected N samples"),
        ({"image": np.full((1, 3, 4, 5), np.nan)}, "NaN"),
    ],
)
def test_bad_calibration(data: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        prepare_calibration((spec("image", (-1, 3, 4, 5)),), data)


@pytest.mark.parametrize(
    ("source", "model", "perm", "ambiguous"),
    [
        ((-1, 3, 224, 224), (-1, 224, 224, 3), (0, 2, 3, 1), False),
        ((-1, 1, 8, 8), (-1, 8, 8, 1), (0, 2, 3, 1), False),
        ((-1, 10), (-1, 10), None, False),
        ((-1, 16, 40), (-1, 40, 16), (0, 2, 1), False),
        ((-1, -1, 512), (-1, -1, 512), None, False),  # dynamic dims: more equal fixed dims wins
        ((-1, 4, 4, 4), (-1, 4, 4, 4), (0, 2, 3, 1), True),  # a tie goes to onnx2tf's way
    ],
)
def test_layout_fit(source: tuple[int, ...], model: tuple[int, ...], perm: Any, ambiguous: bool) -> None:
    fit = layout_fit(source, model)
    assert fit is not None and (fit.perm, fit.ambiguous) == (perm, ambiguous)


def test_layout_fit_refuses_a_stranger() -> None:
    assert layout_fit((-1, 3, 8, 8), (-1, 8, 3, 9)) is None
    assert layout_fit((-1, 10), (-1, 10, 1)) is None


def tensor(
    name: str, key: str | None, shape: list[int], dtype: str = "int8", scale: float = 0.5
) -> dict[str, Any]:
    return {
        "name": name,
        "signature_key": key,
        "shape": shape,
        "dtype": dtype,
        "scale": scale,
        "zero_point": -3,
    }


def test_matching_int8_outputs_by_onnx2tf_keys() -> None:
    # As onnx2tf's INT8 files have them: outputs keyed output_<k>, listed out of source order,
    # and tensor names that say nothing.
    outputs = (spec("scores", (-1, 5)), spec("features/map", (-1, 8, 16, 16)))
    tensors = [
        tensor("PartitionedCall:1", "output_1", [-1, 16, 16, 8]),
        tensor("PartitionedCall:0", "output_0", [-1, 5], scale=0.25),
    ]
    described, notes = describe(outputs, tensors, "output")
    scores, features = described
    assert (scores.model_name, scores.model_shape, scores.transpose) == ("PartitionedCall:0", (-1, 5), None)
    assert scores.quantization is not None and (
        scores.quantization.scale,
        scores.quantization.zero_point,
    ) == (
        0.25,
        -3,
    )
    assert (features.model_name, features.transpose) == ("PartitionedCall:1", (0, 2, 3, 1))
    assert notes == []


def test_matching_by_name_then_by_shape() -> None:
    inputs = (spec("a:0", (-1, 6)), spec("image.in", (-1, 3, 8, 8)))
    tensors = [
        tensor("serving_default_image.in:0", "image.in", [-1, 8, 8, 3], dtype="float32", scale=0.0),
        tensor("serving_default_x:0", None, [-1, 6], dtype="float32", scale=0.0),
    ]
    a, image = describe(inputs, tensors, "input")[0]
    assert (a.model_name, a.transpose, a.quantization) == ("serving_default_x:0", None, None)
    assert (image.model_name, image.transpose) == ("serving_default_image.in:0", (0, 2, 3, 1))


def test_unmatchable_tensor_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match="can't find the source output 'y'"):
        describe((spec("y", (-1, 10)),), [tensor("PartitionedCall:0", "output_7", [-1, 11])], "output")


# -- the converter subprocess, with a stand-in script ------------------------------------------


def fake_converter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> list[str]:
    """Replace the converter script with ``body`` (run by this interpreter); return the list the
    progress lines go to."""
    script = tmp_path / "fake_convert.py"
    script.write_text(
        "import json, sys, time\nfrom pathlib import Path\n"
        "args = sys.argv[1:]\nresult = Path(args[args.index('--result') + 1])\n" + textwrap.dedent(body)
    )
    monkeypatch.setattr(tflite_arm, "SCRIPT", script)
    return []


def convert(tmp_path: Path, lines: list[str], timeout_s: float = 30) -> dict[str, Any]:
    source = tmp_path / "m.onnx"
    onnx.save(castlike_model(), source)
    args = ["--result", str(tmp_path / "result.json")]
    return tflite_arm.run_converter(Path(sys.executable), args, tmp_path, timeout_s, lines.append, source)


def test_converter_progress_and_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = fake_converter(
        tmp_path,
        monkeypatch,
        """
        print("[edgefleet] converting with onnx2tf 9.9")
        print("\\x1b[07mModel conversion started\\x1b[0m ==========")
        print("INFO: 2 / 10 noise that is not a stage")
        result.write_text(json.dumps({"ok": True, "files": {"float32": "m_float32.tflite"}}))
        """,
    )
    assert convert(tmp_path, lines)["files"] == {"float32": "m_float32.tflite"}
    assert lines[:2] == ["converting with onnx2tf 9.9", "onnx2tf: Model conversion started"]
    assert not any("noise" in ln for ln in lines)


def test_converter_error_is_its_last_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = fake_converter(
        tmp_path,
        monkeypatch,
        """
        print("E0000 00:00:1.0 cuda_dnn.cc:8579] Unable to register cuDNN factory")
        print("\\x1b[31mERROR:\\x1b[0m Unsupported attribute: auto_pad=VALID_ISH")
        print("Traceback (most recent call last):")
        result.write_text(json.dumps({"ok": False, "error_kind": "conversion", "error": "onnx2tf stopped"}))
        sys.exit(1)
        """,
    )
    with pytest.raises(CompileError) as err:
        convert(tmp_path, lines)
    assert type(err.value) is CompileError
    assert str(err.value) == "onnx2tf could not convert the model: Unsupported attribute: auto_pad=VALID_ISH"
    assert any("onnx2tf log" in n for n in getattr(err.value, "__notes__", []))


def test_converter_unsupported_op_names_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = fake_converter(
        tmp_path,
        monkeypatch,
        """
        failure = {"ok": False, "error_kind": "unsupported_op", "error": "x", "op": "CastLike"}
        result.write_text(json.dumps(failure))
        sys.exit(1)
        """,
    )
    with pytest.raises(UnsupportedOpError) as err:
        convert(tmp_path, lines)
    assert (err.value.op, err.value.node) == ("CastLike", "castlike1")


def test_broken_toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = fake_converter(
        tmp_path,
        monkeypatch,
        """
        failure = {"ok": False, "error_kind": "toolchain", "error": "No module named 'tensorflow'"}
        result.write_text(json.dumps(failure))
        sys.exit(2)
        """,
    )
    with pytest.raises(
        ToolchainError, match=r"broken \(No module named 'tensorflow'\).*install tflite --force"
    ):
        convert(tmp_path, lines)


def test_converter_that_dies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = fake_converter(tmp_path, monkeypatch, "print('MemoryError: out of memory')\nsys.exit(137)\n")
    with pytest.raises(
        CompileError, match=r"the converter died \(exit status 137\): MemoryError: out of memory"
    ):
        convert(tmp_path, lines)


def test_converter_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = fake_converter(
        tmp_path, monkeypatch, "print('[edgefleet] starting', flush=True)\ntime.sleep(60)\n"
    )
    with pytest.raises(CompileError, match="ran past 1 s and was stopped"):
        convert(tmp_path, lines, timeout_s=1)
    assert lines == ["starting"]


# -- slow: the real converter ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_int8(
    converter: Path, digits: ModelFiles, tmp_path_factory: pytest.TempPathFactory
) -> CompileReport:
    out = tmp_path_factory.mktemp("tflite") / "pi5"
    opts = CompileOptions(calibration=digits.calibration, validation=digits.validation, latency_runs=20)
    return compile_model(digits.model, "raspberry-pi-5", out, opts)


@pytest.mark.slow
def test_digits_int8_is_small(digits_int8: CompileReport) -> None:
    r = digits_int8
    assert (r.target, r.precision, r.manifest.runtime) == ("tflite-arm", "int8", "litert")
    tflite = r.out_dir / "model.tflite"
    assert tflite.stat().st_size <= 0.3 * r.manifest.build["fp32_tflite_size_bytes"]
    assert r.size_ratio <= 0.3  # against the source ONNX as well
    assert r.manifest.build["converted_from"].endswith("_full_integer_quant.tflite")


@pytest.mark.slow
def test_digits_int8_tensors_describe_the_layout_change(digits_int8: CompileReport) -> None:
    (inp,), (out,) = digits_int8.manifest.inputs, digits_int8.manifest.outputs
    assert (inp.name, inp.shape, inp.model_shape, inp.transpose) == (
        "input",
        (-1, 1, 8, 8),
        (-1, 8, 8, 1),
        (0, 2, 3, 1),
    )
    assert inp.quantization is not None and inp.quantization.dtype == "int8"
    assert (out.name, out.shape, out.transpose) == ("logits", (-1, 10), None)
    assert out.quantization is not None and out.quantization.dtype == "int8"
    assert any("NCHW" in n and "NHWC" in n for n in digits_int8.notes)


@pytest.mark.slow
@pytest.mark.skipif(LITERT_MISSING is not None, reason=str(LITERT_MISSING))
def test_digits_int8_agrees_with_fp32(digits_int8: CompileReport, digits: ModelFiles) -> None:
    held = np.load(digits.validation)
    x, y = held["x"], held["y"]  # NCHW float32: the source layout, as a client sends it
    reference = ort.InferenceSession(str(digits.model)).run(None, {"input": x})[0]
    manifest = verify_bundle_dir(digits_int8.out_dir)
    adapter = load_bundle(digits_int8.out_dir, manifest)
    assert isinstance(adapter, LiteRTAdapter)
    got = adapter.infer({"input": x})["logits"]  # one batch of 360: the input tensor is resized
    assert got.shape == reference.shape
    agreement = float(np.mean(got.argmax(1) == reference.argmax(1)))
    accuracy = float(np.mean(got.argmax(1) == y))
    assert agreement >= 0.99
    assert accuracy >= float(np.mean(reference.argmax(1) == y)) - 0.01
    one = adapter.infer({"input": x[:1]})["logits"]  # and back to a batch of 1
    np.testing.assert_allclose(one, got[:1], atol=1e-5)
    assert digits_int8.top1_agreement is not None and digits_int8.top1_agreement >= 0.99


def two_by_two_model() -> onnx.ModelProto:
    """A 3-channel image and a 2-D vector in; class scores and a 4-D feature map out."""
    rng = np.random.default_rng(3)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.4, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["features"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["features"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Concat", ["flat", "meta"], ["both"], name="concat", axis=1),
        helper.make_node("Gemm", ["both", "w2", "b2"], ["scores"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "two_by_two",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8]),
            helper.make_tensor_value_info("meta", TensorProto.FLOAT, ["N", 4]),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 5]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 6, 8, 8]),
        ],
        [init("w1", 6, 3, 3, 3), init("b1", 6), init("w2", 5, 10), init("b2", 5)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.slow
@pytest.mark.skipif(LITERT_MISSING is not None, reason=str(LITERT_MISSING))
def test_two_inputs_two_outputs_int8(converter: Path, tmp_path: Path) -> None:
    model = two_by_two_model()
    path = tmp_path / "two.onnx"
    onnx.save(model, path)
    rng = np.random.default_rng(0)
    cal: dict[str, np.ndarray] = {
        "image": rng.uniform(0, 1, (32, 3, 8, 8)).astype(np.float32),
        "meta": rng.normal(size=(32, 4)).astype(np.float32),
    }
    staging = tmp_path / "staging"
    staging.mkdir()
    lines: list[str] = []
    j = job(path, model, "int8", cal)
    out = TfliteArmTarget().compile(replace(j, progress=lines.append), staging)
    assert any(ln.startswith("onnx2tf: ") for ln in lines)
    assert list(staging.iterdir()) == [staging / "model.tflite"]

    image, meta = out.inputs
    scores, features = out.outputs
    assert (image.model_shape, image.transpose) == ((-1, 8, 8, 3), (0, 2, 3, 1))
    assert (meta.model_shape, meta.transpose) == ((-1, 4), None)
    assert (scores.model_shape, scores.transpose) == ((-1, 5), None)
    assert (features.model_shape, features.transpose) == ((-1, 8, 8, 6), (0, 2, 3, 1))
    assert all(
        t.quantization is not None and t.quantization.dtype == "int8" for t in out.inputs + out.outputs
    )

    manifest = Manifest(
        target="tflite-arm",
        precision="int8",
        runtime="litert",
        runtime_version=out.runtime_version,
        entrypoint=out.entrypoint,
        source_sha256="0" * 64,
        inputs=out.inputs,
        outputs=out.outputs,
        files=(),
    )
    # calibrated inputs: INT8 clips what lies outside the calibration range
    feed = {name: cal[name][:16] for name in ("image", "meta")}
    want = dict(zip(["scores", "features"], ort.InferenceSession(str(path)).run(None, feed), strict=True))
    got = LiteRTAdapter.load(staging, manifest).infer(feed)
    for name in ("scores", "features"):
        assert got[name].shape == want[name].shape
        spread = float(np.ptp(want[name]))
        assert float(np.abs(got[name] - want[name]).max()) <= 0.05 * spread, name
    assert json.loads(json.dumps(out.build))["converter"] == "onnx2tf"
