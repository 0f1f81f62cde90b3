"""Loading and checking the source model; describing its tensors."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from compilers.errors import ModelError
from compilers.modelcheck import guess_layout, iter_nodes, load_model, one_line, tensor_specs
from tests.compilers.compiler_fixtures import cnn_model


def test_specs_carry_dtype_dynamic_dims_and_layout(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(cnn_model(), path)
    inputs, outputs = tensor_specs(load_model(path), path)
    assert [(s.name, s.dtype, s.shape, s.layout) for s in inputs] == [
        ("image", "float32", (-1, 3, 8, 8), "NCHW")
    ]
    assert [(s.name, s.dtype, s.shape, s.layout) for s in outputs] == [("scores", "float32", (-1, 4), None)]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no such file"),
        (b"this is not a protobuf at all \xff\xfe", ""),
        (b"", ""),
    ],
)
def test_not_onnx_is_one_line_model_error(tmp_path: Path, content: bytes | None, why: str) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_model(path)
    msg = str(err.value)
    assert msg.startswith(f"{path} is not an ONNX model: ")
    assert why in msg
    assert "\n" not in msg


def test_checker_failure_is_model_error(tmp_path: Path) -> None:
    model = cnn_model()
    model.graph.node[1].input[0] = "no_such_tensor"  # Relu reads a tensor nothing produces
    path = tmp_path / "broken.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelError, match="is not an ONNX model") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_sequence_input_is_refused(tmp_path: Path) -> None:
    seq = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, None)
    out = helper.make_tensor_value_info("n", TensorProto.INT64, [])
    graph = helper.make_graph([helper.make_node("SequenceLength", ["xs"], ["n"])], "g", [seq], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "seq.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelError, match="input 'xs' is not a tensor"):
        tensor_specs(load_model(path), path)


def test_layout_guess() -> None:
    assert guess_layout((-1, 3, 224, 224)) == "NCHW"
    assert guess_layout((-1, 224, 224, 3)) == "NHWC"
    assert guess_layout((-1, 16, 10, 10)) is None
    assert guess_layout((-1, 10)) is None


def test_iter_nodes_walks_subgraphs() -> None:
    inner = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"], name="inner")],
        "branch",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node("If", ["cond"], ["y"], name="outer", then_branch=inner, else_branch=inner)
    graph = helper.make_graph([node], "g", [], [])
    assert [n.name for n in iter_nodes(graph)] == ["outer", "inner", "inner"]


def test_one_line_flattens_and_cuts() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 500, limit=50)) == 50
