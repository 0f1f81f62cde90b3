"""The intake step (:mod:`compilers.intake`): old opsets, dynamic dims, folding and external data,
on small graphs shaped like other exporters' models, and the compiles they make possible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.contracts.manifest import Intake, Manifest
from compilers import CompileOptions, ShapeError, UnsupportedOpError, compile_model
from compilers.errors import CompileError
from compilers.intake import POLICIES, Normalised, ShapePolicy, normalise, resolve_shapes, shape_policy
from compilers.modelcheck import iter_nodes, opset_of
from compilers.options import parse_input_shape
from tests.compilers.compiler_fixtures import leftovers

ORT_ONLY_DOMAINS = {"com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental"}


def paddle_like(opset: int = 11, width: int = 8) -> onnx.ModelProto:
    """Conv → Add(bias) → Relu → Shape/Gather/Concat/Reshape → Softmax, dynamic batch, height and
    width: what paddle2onnx and older tf2onnx write (the bias as a separate Add, shape arithmetic
    in the graph, opset 11)."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (width, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, (1, width, 1, 1)).astype(np.float32)
    const = helper.make_tensor
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "b"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        helper.make_node(
            "Constant", [], ["idx"], name="idx", value=const("i", TensorProto.INT64, [2], [0, 1])
        ),
        helper.make_node("Gather", ["s", "idx"], ["nc"], name="gather", axis=0),
        helper.make_node("Constant", [], ["m1"], name="m1", value=const("m", TensorProto.INT64, [1], [-1])),
        helper.make_node("Concat", ["nc", "m1"], ["shp"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "shp"], ["rs"], name="reshape"),
        helper.make_node("Softmax", ["rs"], ["y"], name="softmax", axis=2),
    ]
    graph = helper.make_graph(
        nodes,
        "paddle_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width, "HW"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = 6
    return model


def sklearn_like() -> onnx.ModelProto:
    """An ``ai.onnx.ml`` Imputer feeding a MatMul and Softmax, opset 11: skl2onnx's shape (an
    Imputer, which :mod:`compilers.ml_ops` does not write in default-domain ops)."""
    rng = np.random.default_rng(1)
    weights = rng.normal(0, 1, (4, 3)).astype(np.float32)
    nodes = [
        helper.make_node(
            "Imputer",
            ["x"],
            ["s"],
            domain="ai.onnx.ml",
            name="imputer",
            imputed_value_floats=[0.0] * 4,
            replaced_value_float=float("nan"),
        ),
        helper.make_node("MatMul", ["s", "wm"], ["m"], name="matmul"),
        helper.make_node("Softmax", ["m"], ["p"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "sklearn_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(weights, "wm")],
    )
    imports = [helper.make_opsetid("", 11), helper.make_opsetid("ai.onnx.ml", 1)]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 6
    return model


def text_like() -> onnx.ModelProto:
    """int64 token ids [batch, seq] → embedding Gather → ReduceMean over seq → Gemm."""
    rng = np.random.default_rng(2)
    emb = rng.normal(0, 1, (50, 16)).astype(np.float32)
    fc = rng.normal(0, 1, (16, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed", axis=0),
        helper.make_node("ReduceMean", ["e"], ["m"], name="mean", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["m", "fc"], ["logits"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "text_like",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])],
        [numpy_helper.from_array(emb, "emb"), numpy_helper.from_array(fc, "fc")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def images(n: int, h: int = 12, w: int = 20, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 3, h, w)).astype(np.float32)


def run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(None, feeds)]


def domains(model: onnx.ModelProto) -> set[str]:
    return {n.domain for n in iter_nodes(model.graph)}


def _normalise(model: onnx.ModelProto, tmp: Path, target: str = "onnx-x86", **kw: Any) -> Normalised:
    source = tmp / "source.onnx"
    onnx.save(model, source)
    return normalise(model, source, tmp / "work", POLICIES[target], target=target, **kw)


# -- normalise --------------------------------------------------------------------------------------


FIXED_BATCH = ShapePolicy(dynamic_batch=False, dynamic_dims=False)  # a plug-in target's, say


@pytest.mark.parametrize(
    ("target", "policy"), [(t, POLICIES[t]) for t in POLICIES] + [("my-npu", FIXED_BATCH)]
)
def test_opset11_dynamic_model_is_upgraded_fixed_and_folded(
    tmp_path: Path, target: str, policy: ShapePolicy
) -> None:
    source = tmp_path / "source.onnx"
    onnx.save(paddle_like(), source)
    n = normalise(
        onnx.load(source),
        source,
        tmp_path / "work",
        policy,
        target=target,
        sample_shapes={"x": (10, 3, 12, 20)},
    )
    assert opset_of(n.model) == 17 and n.record.source_opset == 11 and n.record.opset == 17
    assert n.steps[0] == "opset 11 → 17"
    batch = "?" if policy.dynamic_batch else "1"
    assert n.steps[1].startswith(f"input x: [?,3,?,?] → [{batch},3,12,20]")
    assert ("batch kept dynamic" in n.steps[1]) is policy.dynamic_batch
    assert n.record.input_shapes["x"] == ((-1 if policy.dynamic_batch else 1), 3, 12, 20)
    assert any(s.startswith("simplified with ") for s in n.steps)
    assert "Add" not in [node.op_type for node in n.model.graph.node]  # the bias Add went into the Conv
    assert not domains(n.model) & ORT_ONLY_DOMAINS
    assert {o.domain for o in n.model.opset_import} <= {"", "ai.onnx"}
    x = images(1)
    np.testing.assert_allclose(run(n.path, {"x": x})[0], run(source, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_batch_one_fixes_what_the_shape_arithmetic_computes(tmp_path: Path) -> None:
    """With every dim known (a target that fixes the batch at 1) the Shape/Gather/Concat chain
    folds away and the output shape is known."""
    source = tmp_path / "source.onnx"
    onnx.save(paddle_like(), source)
    n = normalise(
        paddle_like(),
        source,
        tmp_path / "w",
        FIXED_BATCH,
        target="my-npu",
        sample_shapes={"x": (4, 3, 12, 20)},
    )
    ops = [node.op_type for node in n.model.graph.node]
    assert "Shape" not in ops and "Gather" not in ops
    assert n.outputs[0].shape == (1, 8, 240)


def test_input_shape_option_wins_over_the_samples(tmp_path: Path) -> None:
    n = _normalise(
        paddle_like(), tmp_path, "tensorrt-jetson", input_shapes={"x": (4, 3, 48, 192)},
        sample_shapes={"x": (10, 3, 12, 20)},
    )  # fmt: skip
    assert n.record.input_shapes["x"] == (-1, 3, 48, 192)


def test_onnxruntime_keeps_a_dim_nothing_sizes(tmp_path: Path) -> None:
    n = _normalise(paddle_like(13), tmp_path, "onnx-x86", simplify=False)
    assert n.record.input_shapes["x"] == (-1, 3, -1, -1)
    assert n.steps == (
        "input x: [?,3,?,?] → [?,3,?,?] (batch kept dynamic; dim 2, 3 left dynamic: nothing gives its size)",
    )


def test_a_batch_spelled_minus_one_gets_a_name(tmp_path: Path) -> None:
    """paddle2onnx writes a dynamic batch as ``dim_value: -1``, which onnx2tf refuses."""
    model = paddle_like(13)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].Clear()
    dims[0].dim_value = -1
    n = _normalise(model, tmp_path, "tflite-arm", sample_shapes={"x": (2, 3, 12, 20)}, simplify=False)
    got = n.model.graph.input[0].type.tensor_type.shape.dim
    assert got[0].dim_param == "batch" and not got[0].HasField("dim_value")
    assert n.inputs[0].shape == (-1, 3, 12, 20)


def test_nothing_to_do_leaves_the_source_file(tmp_path: Path) -> None:
    model = paddle_like(17)
    for v in (model.graph.input[0],):
        for i, d in enumerate(v.type.tensor_type.shape.dim):
            d.Clear()
            d.dim_value = (1, 3, 12, 20)[i]
    model.graph.node.pop()  # no Softmax: the shape chain still folds
    source = tmp_path / "source.onnx"
    onnx.save(model, source)
    n = normalise(model, source, tmp_path / "w", POLICIES["onnx-x86"], target="onnx-x86", simplify=False)
    assert n.path == source and n.steps == ()


@pytest.mark.parametrize(
    ("target", "requested", "message"),
    [
        ("onnx-x86", {"image": (1, 3, 8, 8)}, "the model has no input 'image' (inputs: x)"),
        ("onnx-x86", {"x": (1, 3, 8)}, "rank 3, but input 'x' is [?,3,?,?] (rank 4)"),
        ("onnx-x86", {"x": (1, 4, 8, 8)}, "dim 1 is 4, but the model fixes it at 3"),
        ("tensorrt-jetson", {}, "dim 2 is dynamic and target tensorrt-jetson needs its size; give"),
        ("tflite-arm", {}, "target tflite-arm needs its size"),
    ],
)  # fmt: skip
def test_shape_errors(
    tmp_path: Path, target: str, requested: dict[str, tuple[int, ...]], message: str
) -> None:
    with pytest.raises(ShapeError) as err:
        resolve_shapes(paddle_like(), POLICIES[target], target, requested, {})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_plugin_target_policy() -> None:
    class Plugin:
        name = "my-npu"
        shape_policy = ShapePolicy(dynamic_batch=False, dynamic_dims=False)

    class Unknown:
        name = "other"

    assert shape_policy(Plugin()) == ShapePolicy(False, False)
    assert shape_policy(Unknown()) == ShapePolicy(True, True)


def test_ml_domain_survives_the_upgrade(tmp_path: Path) -> None:
    n = _normalise(sklearn_like(), tmp_path)
    assert opset_of(n.model) == 17 and opset_of(n.model, "ai.onnx.ml") == 1
    assert "ai.onnx.ml" in domains(n.model)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(
        run(n.path, {"x": x})[0], run(tmp_path / "source.onnx", {"x": x})[0], rtol=1e-5
    )


def test_external_data_source(tmp_path: Path) -> None:
    """Weights in a separate file: the normalised model keeps them in one too, and runs."""
    model = paddle_like(width=64)  # weights of 7 KB: above the 1 KB kept inline
    source = tmp_path / "src" / "model.onnx"
    source.parent.mkdir()
    onnx.save(model, source, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (source.parent / "weights.bin").is_file()
    loaded = onnx.load(source)
    n = normalise(
        loaded, source, tmp_path / "work", POLICIES["onnx-x86"], target="onnx-x86",
        sample_shapes={"x": (2, 3, 12, 20)},
    )  # fmt: skip
    assert n.record.external_data
    assert "weights kept in an external data file" in n.steps
    skeleton = onnx.load(n.path, load_external_data=False)
    assert any(onnx.external_data_helper.uses_external_data(t) for t in skeleton.graph.initializer)
    x = images(2)
    np.testing.assert_allclose(run(n.path, {"x": x})[0], run(source, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_large_weights_are_saved_as_external_data(tmp_path: Path) -> None:
    """Past the threshold (1 GiB by default; lowered here) an inline model is worked on and saved
    with its weights in a separate file."""
    model = paddle_like(width=64)
    n = _normalise(model, tmp_path, sample_shapes={"x": (2, 3, 12, 20)}, external_threshold=100)
    assert n.record.external_data
    data = [p for p in n.path.parent.iterdir() if p.suffix == ".data"]
    assert data and n.path.stat().st_size < 1000
    x = images(1)
    np.testing.assert_allclose(
        run(n.path, {"x": x})[0], run(tmp_path / "source.onnx", {"x": x})[0], rtol=1e-5, atol=1e-6
    )


def test_upgrade_failure_for_int8_is_a_model_error(tmp_path: Path) -> None:
    """An op the version converter has no adapter for (a custom domain op at opset 11 is fine;
    here the default-domain opset is one the converter can't start from) stops an INT8 compile."""
    model = paddle_like()
    model.opset_import[0].version = 1  # no model uses opset 1 ops this way: the converter fails
    source = tmp_path / "m.onnx"
    onnx.save(model, source)
    with pytest.raises(
        CompileError, match=r"opset 1 could not be upgraded to 13, which INT8 needs .*--precision fp16"
    ):
        normalise(model, source, tmp_path / "w", POLICIES["onnx-x86"], target="onnx-x86", need_opset=13)
    n = normalise(model, source, tmp_path / "w2", POLICIES["onnx-x86"], target="onnx-x86", simplify=False)
    assert n.steps[0].startswith("opset 1 kept: the upgrade failed")


def test_a_model_onnx_runtime_can_not_load_is_kept_unsimplified(tmp_path: Path) -> None:
    model = paddle_like(13)
    model.graph.node.insert(3, helper.make_node("Foo", ["r"], ["r2"], domain="my.ops", name="foo"))
    model.graph.node[4].input[0] = "r2"  # Shape reads Foo's output
    model.graph.node[9].input[0] = "r2"  # and so does Reshape
    model.opset_import.append(helper.make_opsetid("my.ops", 1))
    n = _normalise(model, tmp_path, "onnx-x86", sample_shapes={"x": (2, 3, 12, 20)})
    assert n.record.simplifier is None
    assert any(s.startswith("not simplified: ONNX Runtime") for s in n.steps)
    assert "foo" in [node.name for node in n.model.graph.node]


def test_parse_input_shape() -> None:
    assert parse_input_shape("x=1,3,48,192") == ("x", (1, 3, 48, 192))
    assert parse_input_shape("input:0=1x3x8x8") == ("input:0", (1, 3, 8, 8))
    for bad in ("x", "=1,2", "x=1,,2", "x=0,3", "x=a"):
        with pytest.raises(CompileError, match="expected NAME=DIM,DIM"):
            parse_input_shape(bad)


# -- compiles ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paddle_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("paddle")
    onnx.save(paddle_like(), root / "m.onnx")
    np.savez(root / "cal.npz", x=images(32))
    return root / "m.onnx", root / "cal.npz"


@pytest.mark.parametrize("profile", ["x86-64-avx2", "jetson-orin-nano"])
def test_opset11_model_compiles_int8(paddle_files: tuple[Path, Path], tmp_path: Path, profile: str) -> None:
    """Without intake, per-channel QDQ of this opset-11 model wrote DequantizeLinear nodes with an
    ``axis`` that ONNX Runtime refused to load."""
    model, cal = paddle_files
    # The subject is a loadable INT8 graph, not its accuracy: this tiny random softmax map keeps a
    # cosine of about 0.98 with FP32, under the default 0.99 for maps.
    opts = CompileOptions(
        precision="int8", calibration=cal, latency_runs=0, samples=2, metric="cosine", metric_threshold=0.95
    )
    report = compile_model(model, profile, tmp_path / "b", opts)
    assert report.intake_steps[0] == "opset 11 → 17"
    assert report.max_abs_error < 0.05
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert manifest.intake is not None and manifest.intake.source_opset == 11
    assert manifest.intake.input_shapes == {"x": (-1, 3, 12, 20)}
    assert manifest.inputs[0].shape == (-1, 3, 12, 20)
    assert report.to_dict()["intake_steps"] == list(report.intake_steps)
    out = run(tmp_path / "b" / "model.onnx", {"x": images(3)})[0]
    assert out.shape == (3, 8, 240)


def test_int64_text_input_compiles_with_its_seq_from_the_samples(tmp_path: Path) -> None:
    onnx.save(text_like(), tmp_path / "t.onnx")
    ids = np.random.default_rng(4).integers(0, 50, (24, 16)).astype(np.int64)
    np.savez(tmp_path / "val.npz", ids=ids)
    opts = CompileOptions(precision="fp32", validation=tmp_path / "val.npz", latency_runs=0, samples=0)
    report = compile_model(tmp_path / "t.onnx", "jetson-orin-nano", tmp_path / "b", opts)
    assert report.manifest.inputs[0].shape == (-1, 16) and report.manifest.inputs[0].dtype == "int64"
    assert "input ids: [?,?] → [?,16] (batch kept dynamic)" in report.intake_steps
    spec = json.loads((tmp_path / "b" / "build_spec.json").read_text())
    assert spec["optimization_profiles"] == [{"ids": {"min": [1, 16], "opt": [1, 16], "max": [8, 16]}}]


def test_ml_domain_model_compiles_for_onnx_x86_and_is_refused_by_tensorrt(tmp_path: Path) -> None:
    onnx.save(sklearn_like(), tmp_path / "s.onnx")
    np.savez(tmp_path / "val.npz", x=np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    opts = CompileOptions(precision="fp32", validation=tmp_path / "val.npz", latency_runs=0, samples=0)
    report = compile_model(tmp_path / "s.onnx", "x86-64-avx2", tmp_path / "x86", opts)
    assert report.top1_agreement == 1.0 and report.intake_steps[0] == "opset 11 → 17"
    with pytest.raises(UnsupportedOpError) as err:
        compile_model(tmp_path / "s.onnx", "jetson-orin-nano", tmp_path / "trt", opts)
    assert str(err.value) == (
        "target tensorrt-jetson can't take op ai.onnx.ml.Imputer (node 'imputer'): TensorRT's ONNX parser "
        "imports only the default ONNX domain (custom ops need a plugin); try compiling for onnx-x86 "
        "(ONNX Runtime runs ai.onnx.ml ops)"
    )
    assert leftovers(tmp_path, "trt") == []


def test_shape_error_leaves_nothing(paddle_files: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = paddle_files
    opts = CompileOptions(precision="fp16", input_shapes={"image": (1, 3, 8, 8)})
    with pytest.raises(ShapeError, match="has no input 'image'"):
        compile_model(model, "jetson-orin-nano", tmp_path / "b", opts)
    with pytest.raises(ShapeError, match="give --input-shape x="):
        compile_model(model, "jetson-orin-nano", tmp_path / "b", CompileOptions(precision="fp16"))
    assert leftovers(tmp_path, "b") == []


def test_manifest_without_intake_still_reads() -> None:
    m: dict[str, Any] = {
        "schema": "edgefleet.manifest/1",
        "target": "onnx-x86",
        "precision": "fp32",
        "runtime": "onnxruntime",
        "runtime_version": "1.18",
        "entrypoint": "model.onnx",
        "source_sha256": "0" * 64,
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 2]}],
        "files": [{"path": "model.onnx", "sha256": "0" * 64, "size": 1}],
    }
    assert Manifest.from_dict(m).intake is None
    m["intake"] = Intake(
        steps=("opset 11 → 17",), source_opset=11, opset=17, input_shapes={"x": (-1, 4)}
    ).to_dict()
    back = Manifest.from_dict(json.loads(json.dumps(m)))
    assert back.intake == Intake(
        steps=("opset 11 → 17",), source_opset=11, opset=17, input_shapes={"x": (-1, 4)}
    )


# -- edgectl compile --input-shape --------------------------------------------------------------------


def _edgectl(*args: object) -> Any:
    from typer.testing import CliRunner

    from edgectl.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_edgectl_compile_input_shape(paddle_files: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = paddle_files
    out = tmp_path / "b"
    result = _edgectl(
        "compile",
        model,
        "-p",
        "jetson-orin-nano",
        "--precision",
        "fp16",
        "--input-shape",
        "x=1,3,16,24",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["intake"]["input_shapes"] == {"x": [-1, 3, 16, 24]}
    assert "intake: input x: [?,3,?,?] → [?,3,16,24] (batch kept dynamic)" in result.stdout
    spec = json.loads((out / "build_spec.json").read_text())
    assert spec["optimization_profiles"][0]["x"]["max"] == [8, 3, 16, 24]


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("x=1,3,16", "error: --input-shape x=1,3,16: rank 3, but input 'x' is [?,3,?,?] (rank 4)"),
        ("x:1,3,16,24", "error: --input-shape 'x:1,3,16,24': expected NAME=DIM,DIM,..."),
    ],
)
def test_edgectl_compile_bad_input_shape(
    paddle_files: tuple[Path, Path], tmp_path: Path, shape: str, message: str
) -> None:
    model, _ = paddle_files
    result = _edgectl("compile", model, "-p", "x86-64-avx2", "--input-shape", shape, "--out", tmp_path / "b")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.output
    assert leftovers(tmp_path, "b") == []


def test_refusals_share_one_shape_across_targets(tmp_path: Path) -> None:
    """``target T can't take op OP (node 'N'): why; try what`` for every built-in target."""
    onnx.save(sklearn_like(), tmp_path / "s.onnx")
    custom = paddle_like(13)
    custom.graph.node.insert(3, helper.make_node("Foo", ["r"], ["r2"], domain="my.ops", name="foo"))
    custom.graph.node[4].input[0] = custom.graph.node[9].input[0] = "r2"
    custom.opset_import.append(helper.make_opsetid("my.ops", 1))
    onnx.save(custom, tmp_path / "c.onnx")
    opts = CompileOptions(precision="fp32", input_shapes={"x": (1, 3, 8, 8)})
    ort_v = ort.__version__
    cases = [
        (
            "s.onnx",
            "raspberry-pi-5",
            "tflite-arm can't take op ai.onnx.ml.Imputer (node 'imputer'): onnx2tf converts only "
            "default-domain ONNX ops; try compiling for onnx-x86 (ONNX Runtime runs ai.onnx.ml ops)",
        ),
        (
            "c.onnx",
            "x86-64-avx2",
            f"onnx-x86 can't take op my.ops.Foo (node 'foo'): ONNX Runtime {ort_v} has no CPU kernel "
            "for it; try re-exporting the model with a newer opset (e.g. 17) or without this op",
        ),
        (
            "c.onnx",
            "jetson-orin-nano",
            "tensorrt-jetson can't take op my.ops.Foo (node 'foo'): TensorRT's ONNX parser imports only "
            "the default ONNX domain (custom ops need a plugin); try compiling for onnx-x86 "
            "(ONNX Runtime runs my.ops ops)",
        ),
    ]
    for model, profile, message in cases:
        with pytest.raises(UnsupportedOpError) as err:
            compile_model(
                tmp_path / model,
                profile,
                tmp_path / "b",
                opts if model == "c.onnx" else CompileOptions(precision="fp32"),
            )
        assert str(err.value) == f"target {message}"
        assert leftovers(tmp_path, "b") == []


def sklearn_classifier() -> onnx.ModelProto:
    """LinearClassifier → Normalizer → ZipMap, only the ``ai.onnx.ml`` domain: onnxmltools' and
    skl2onnx's logistic regression, whose probabilities come out as a sequence of maps."""
    nodes = [
        helper.make_node(
            "LinearClassifier", ["x"], ["label", "prob"], domain="ai.onnx.ml", name="clf",
            classlabels_ints=[0, 1, 2], coefficients=[1.0, -1.0, -0.5, 0.5, 0.2, 0.3],
            intercepts=[0.1, 0.0, -0.1], multi_class=1, post_transform="LOGISTIC",
        ),
        helper.make_node("Normalizer", ["prob"], ["norm"], domain="ai.onnx.ml", name="norm", norm="L1"),
        helper.make_node(
            "ZipMap", ["norm"], ["probabilities"], domain="ai.onnx.ml", name="zip",
            classlabels_int64s=[0, 1, 2],
        ),
    ]  # fmt: skip
    seq = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    graph = helper.make_graph(
        nodes,
        "sklearn_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_value_info("probabilities", seq),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 6
    return model


def test_zipmap_output_becomes_a_probability_tensor(tmp_path: Path) -> None:
    onnx.save(sklearn_classifier(), tmp_path / "clf.onnx")
    x = np.random.default_rng(5).normal(0, 1, (60, 2)).astype(np.float32)
    np.savez(tmp_path / "val.npz", x=x)
    opts = CompileOptions(precision="fp32", validation=tmp_path / "val.npz", latency_runs=0, samples=0)
    report = compile_model(tmp_path / "clf.onnx", "x86-64-avx2", tmp_path / "b", opts)
    assert report.intake_steps == (
        "output probabilities: ZipMap dropped, a float tensor [?,3] of class probabilities instead of a "
        "sequence of maps",
    )
    assert [(o.name, o.dtype, o.shape) for o in report.manifest.outputs] == [
        ("label", "int64", (-1,)),
        ("probabilities", "float32", (-1, 3)),
    ]
    label, probs = run(tmp_path / "b" / "model.onnx", {"x": x})
    assert probs.shape == (60, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == label).all()
    source = ort.InferenceSession(str(tmp_path / "clf.onnx"), providers=["CPUExecutionProvider"])
    maps = source.run(["probabilities"], {"x": x})[0]
    np.testing.assert_allclose(probs, [[m[k] for k in (0, 1, 2)] for m in maps], rtol=1e-6)


def test_slices_that_select_everything_are_removed() -> None:
    from compilers.intake import drop_noop_slices

    def ints(name: str, values: list[int]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(values, np.int64), name)

    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        # tf2onnx's strided_slice with every mask set: axes out of order, ends past any size
        helper.make_node("Slice", ["r", "z4", "big4", "perm", "one4"], ["s1"], name="whole"),
        helper.make_node("Slice", ["s1", "z4", "to_dims"], ["s2"], name="whole_by_size"),
        helper.make_node("Slice", ["s2", "z1", "two", "ax2"], ["s3"], name="part"),  # keeps 2 of 5
        helper.make_node("Relu", ["s3"], ["y"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "slices",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 5, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            ints("z4", [0, 0, 0, 0]),
            ints("big4", [1_000_000_000] * 4),
            ints("perm", [0, 2, 1, 3]),
            ints("one4", [1, 1, 1, 1]),
            ints("to_dims", [2**31 - 1, 3, 5, 1]),
            ints("z1", [0]),
            ints("two", [2]),
            ints("ax2", [2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    steps: list[str] = []
    out = drop_noop_slices(model, steps)
    assert [n.name for n in out.graph.node] == ["relu", "part", "out"]
    assert steps == ["2 Slice node(s) that select their whole input removed (whole, whole_by_size)"]
    x = np.random.default_rng(3).normal(size=(2, 3, 5, 1)).astype(np.float32)

    def run(m: onnx.ModelProto) -> np.ndarray:
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.asarray(s.run(None, {"x": x})[0])

    np.testing.assert_array_equal(run(out), run(model))
    assert drop_noop_slices(out, steps) is out  # the partial slice stays


def two_rate_model() -> onnx.ModelProto:
    """x [N, L] and a scalar ``sr``: an If picks the 16 kHz branch (the mean of x) or the 8 kHz
    one, which frames x by 288 and squeezes the frame axis; at L = 576 the 8 kHz branch's shapes
    no longer infer (the frame axis is 2, not 1), though the samples never take it (as Silero VAD
    v5's graph is)."""
    then = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m16"], axes=[1], keepdims=0)],
        "rate16k",
        [],
        [helper.make_tensor_value_info("m16", TensorProto.FLOAT, None)],
    )
    other = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "frames"], ["framed"]),
            helper.make_node("Squeeze", ["framed", "one"], ["squeezed"]),
            helper.make_node("ReduceMean", ["squeezed"], ["m8"], axes=[1], keepdims=0),
        ],
        "rate8k",
        [],
        [helper.make_tensor_value_info("m8", TensorProto.FLOAT, None)],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Equal", ["sr", "rate16k"], ["is16k"], name="which_rate"),
            helper.make_node("If", ["is16k"], ["score"], name="by_rate", then_branch=then, else_branch=other),
        ],
        "two_rates",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L"]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
        [
            numpy_helper.from_array(np.array(16000, np.int64), "rate16k"),
            numpy_helper.from_array(np.array([0, -1, 288], np.int64), "frames"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dims_stay_dynamic_where_fixing_them_breaks_an_untaken_branch(tmp_path: Path) -> None:
    onnx.save(two_rate_model(), tmp_path / "m.onnx")
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "val.npz", x=rng.normal(size=(16, 576)).astype(np.float32), sr=np.array(16000))
    opts = CompileOptions(precision="fp32", validation=tmp_path / "val.npz", latency_runs=0, samples=2)
    report = compile_model(tmp_path / "m.onnx", "x86-64-avx2", tmp_path / "b", opts)
    assert any("input dims kept dynamic" in s for s in report.intake_steps), report.intake_steps
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert [list(t.shape) for t in manifest.inputs] == [[-1, -1], []]
    assert all(m.passed for m in report.metrics)
    # where no branch breaks, the samples' sizes are fixed as before
    onnx.save(two_rate_model(), tmp_path / "ok.onnx")
    np.savez(tmp_path / "val2.npz", x=rng.normal(size=(16, 288)).astype(np.float32), sr=np.array(16000))
    opts2 = CompileOptions(precision="fp32", validation=tmp_path / "val2.npz", latency_runs=0, samples=2)
    fixed = compile_model(tmp_path / "ok.onnx", "x86-64-avx2", tmp_path / "b2", opts2)
    assert not any("input dims kept dynamic" in s for s in fixed.intake_steps)
    assert [list(t.shape) for t in fixed.manifest.inputs] == [[-1, 288], []]
