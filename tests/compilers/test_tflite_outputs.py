"""Graph outputs onnx2tf drops, kept in the TFLite bundle:

* outputs that only pass an input through (sentence-transformers exports return ``input_ids``):
  left out of the model, marked ``echo_of`` in the manifest; the runtime gives the input back;
* an output that other nodes also read, named as torch.onnx names tensors (``onnx::Shape_422``):
  renamed for the conversion, found again under its new name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.contracts.errors import ContractError
from agent.contracts.manifest import Manifest
from agent.runtimes import load_bundle
from compilers import CompileOptions, compile_model
from compilers.tflite_arm import echo_outputs, prepare_model
from tests.compilers.compiler_fixtures import require_tflite

RNG = np.random.default_rng(11)
SEQ, VOCAB = 8, 40


def text_model() -> onnx.ModelProto:
    """ids [N, 8] int64 → embedding → mean over tokens; also ``ids_out`` = Identity(ids) and a
    mask passed through as is."""
    emb = RNG.normal(size=(VOCAB, 6)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed", axis=0),
        helper.make_node("ReduceMean", ["e"], ["pooled"], name="pool", axes=[1], keepdims=0),
        helper.make_node("Identity", ["ids"], ["ids_out"], name="echo"),
    ]
    graph = helper.make_graph(
        nodes,
        "text",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None, SEQ])],
        [
            helper.make_tensor_value_info("ids_out", TensorProto.INT64, [None, SEQ]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [None, 6]),
        ],
        [numpy_helper.from_array(emb, "emb")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_echo_outputs_are_found() -> None:
    model = text_model()
    assert echo_outputs(model) == {"ids_out": "ids"}
    only = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["ids"], ["ids_out"])],
            "only",
            [helper.make_tensor_value_info("ids", TensorProto.INT64, [None, SEQ])],
            [helper.make_tensor_value_info("ids_out", TensorProto.INT64, [None, SEQ])],
        )
    )
    assert echo_outputs(only) == {}  # nothing would be left to convert


def test_the_manifest_refuses_an_echo_of_no_input(tmp_path: Path) -> None:
    from agent.contracts.manifest import FileEntry, TensorSpec

    base = Manifest(
        target="tflite-arm",
        precision="fp32",
        runtime="litert",
        runtime_version="1",
        entrypoint="model.tflite",
        source_sha256="0" * 64,
        inputs=(TensorSpec("ids", "int64", (-1, SEQ)),),
        outputs=(
            TensorSpec("ids_out", "int64", (-1, SEQ), echo_of="nope"),
            TensorSpec("y", "float32", (-1, 6)),
        ),
        files=(FileEntry("model.tflite", "0" * 64, 1),),
    )
    with pytest.raises(ContractError, match=r"outputs\[0\]\.echo_of: 'nope' is not an input"):
        base.check("manifest")
    only = replace(base, outputs=(TensorSpec("ids_out", "int64", (-1, SEQ), echo_of="ids"),))
    with pytest.raises(ContractError, match="every output echoes an input"):
        only.check("manifest")


def test_a_tflite_bundle_gives_the_passed_through_input_back(tmp_path: Path) -> None:
    require_tflite()
    onnx.save(text_model(), tmp_path / "text.onnx")
    ids = RNG.integers(0, VOCAB, size=(24, SEQ)).astype(np.int64)
    np.savez(tmp_path / "val.npz", ids=ids)
    opts = CompileOptions(precision="fp32", validation=tmp_path / "val.npz", latency_runs=0, samples=2)
    report = compile_model(tmp_path / "text.onnx", "raspberry-pi-5", tmp_path / "b", opts)
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert [(o.name, o.echo_of) for o in manifest.outputs] == [("ids_out", "ids"), ("pooled", None)]
    scores = {m.output: m for m in manifest.validation.metrics}  # type: ignore[union-attr]
    assert scores["ids_out"].metric == "exact" and scores["ids_out"].value == 1.0
    assert any("passes input 'ids' through" in n for n in report.notes)
    adapter = load_bundle(tmp_path / "b", manifest)
    try:
        out = adapter.infer({"ids": ids[:1]})
    finally:
        adapter.close()
    assert list(out) == ["ids_out", "pooled"]
    np.testing.assert_array_equal(out["ids_out"], ids[:1])
    assert out["ids_out"].dtype == np.int64


def hidden_and_pooled(name: str) -> onnx.ModelProto:
    """x → Relu (output ``name``, also read by the pooling) → mean over axis 1 (output ``pooled``)."""
    nodes = [
        helper.make_node("Relu", ["x"], [name], name="act"),
        helper.make_node("ReduceMean", [name], ["pooled"], name="pool", axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "hidden",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8, 16])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 8, 16]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [None, 16]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_outputs_with_names_tensorflow_refuses_are_renamed(tmp_path: Path) -> None:
    onnx.save(hidden_and_pooled("onnx::Shape_422"), tmp_path / "m.onnx")
    prepared = prepare_model(tmp_path / "m.onnx", tmp_path / "out.onnx")
    assert prepared.output_names == {"onnx::Shape_422": "onnx__Shape_422"}
    got = onnx.load(tmp_path / "out.onnx")
    assert [o.name for o in got.graph.output] == ["onnx__Shape_422", "pooled"]
    assert list(got.graph.node[1].input) == ["onnx__Shape_422"]


def test_a_tflite_bundle_keeps_an_output_that_other_nodes_read(tmp_path: Path) -> None:
    require_tflite()
    onnx.save(hidden_and_pooled("onnx::Shape_422"), tmp_path / "m.onnx")
    np.savez(tmp_path / "val.npz", x=RNG.normal(size=(16, 8, 16)).astype(np.float32))
    opts = CompileOptions(precision="fp32", validation=tmp_path / "val.npz", latency_runs=0, samples=2)
    compile_model(tmp_path / "m.onnx", "raspberry-pi-5", tmp_path / "b", opts)
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert [o.name for o in manifest.outputs] == ["onnx::Shape_422", "pooled"]
    assert all(m.passed for m in manifest.validation.metrics)  # type: ignore[union-attr]


def test_erf_converts_to_builtin_ops_litert_runs(tmp_path: Path) -> None:
    # TensorFlow writes Erf (torch.onnx's GELU) as a Flex op, which LiteRT does not run
    require_tflite()
    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"], name="erf")],
        "gelu_part",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "erf.onnx")
    np.savez(tmp_path / "val.npz", x=RNG.normal(scale=2, size=(16, 16)).astype(np.float32))
    opts = CompileOptions(precision="fp32", validation=tmp_path / "val.npz", latency_runs=0, samples=2)
    report = compile_model(tmp_path / "erf.onnx", "raspberry-pi-5", tmp_path / "b", opts)
    assert report.checked_with is None  # ran under LiteRT itself, not a stand-in
    assert report.max_abs_error is not None and report.max_abs_error < 1e-5
