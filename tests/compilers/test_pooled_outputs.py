"""Which [N, K] outputs the graph makes by pooling (embeddings, scored by cosine) rather than
as class scores (top-1): read from the ops that make them, in graphs built here."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.contracts.manifest import TensorSpec
from compilers.metrics import choose_metric, score_outputs
from compilers.modelcheck import pooled_outputs
from compilers.validate import compare


def _graph(
    nodes: list[onnx.NodeProto], out: str = "y", inits: tuple[onnx.TensorProto, ...] = ()
) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 7, 8])
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(inits)))


def _axes() -> onnx.TensorProto:
    return numpy_helper.from_array(np.array([1], np.int64), "axes")


def test_mean_pooled_tokens_behind_a_one_input_concat_are_an_embedding() -> None:
    # sentence-transformers' mean pooling: tokens summed, over the (clipped) count of the mask
    m = _graph(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
            helper.make_node("ReduceSum", ["x", "axes"], ["n"], keepdims=0),
            helper.make_node("Clip", ["n", "lo"], ["c"]),
            helper.make_node("Div", ["s", "c"], ["d"]),
            helper.make_node("Concat", ["d"], ["y"], axis=1),
        ],
        inits=(_axes(), numpy_helper.from_array(np.array(1e-9, np.float32), "lo")),
    )
    assert pooled_outputs(m) == {"y"}


@pytest.mark.parametrize("op", ["ReduceMean", "GlobalAveragePool"])
def test_a_reduction_through_reshape_and_flatten_is_an_embedding(op: str) -> None:
    pool = (
        helper.make_node("ReduceMean", ["x", "axes"], ["p"], keepdims=0)
        if op == "ReduceMean"
        else helper.make_node("GlobalAveragePool", ["x"], ["p"])
    )
    m = _graph(
        [pool, helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Identity", ["f"], ["y"])],
        inits=(_axes(),),
    )
    assert pooled_outputs(m) == {"y"}


def test_class_scores_are_not_pooled() -> None:
    w = numpy_helper.from_array(np.ones((8, 5), np.float32), "w")
    t = numpy_helper.from_array(np.array(2.0, np.float32), "t")
    gemm = _graph(
        [
            helper.make_node("ReduceMean", ["x", "axes"], ["p"], keepdims=0),
            helper.make_node("MatMul", ["p", "w"], ["logits"]),
            helper.make_node("Div", ["logits", "t"], ["y"]),  # temperature scaling
        ],
        inits=(_axes(), w, t),
    )
    softmax_written_out = _graph(
        [
            helper.make_node("Exp", ["x"], ["e"]),
            helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=1),
            helper.make_node("Div", ["e", "s"], ["y"]),
        ],
        inits=(_axes(),),
    )
    assert pooled_outputs(gemm) == frozenset()
    assert pooled_outputs(softmax_written_out) == frozenset()


def test_a_pooled_output_is_scored_by_cosine_not_top1() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(40, 384)).astype(np.float32)  # not unit norm, no telling name
    got = ref + rng.normal(scale=0.3, size=ref.shape).astype(np.float32)
    assert choose_metric("461", ref)[0] == "top1"
    assert choose_metric("461", ref, pooled=True) == (
        "cosine",
        "[N, 384] pooled from a sequence or map (an embedding)",
    )
    (score,) = score_outputs({"461": ref}, {"461": got}, ["461"], 0.99, pooled=frozenset({"461"}))
    assert score.metric == "cosine" and 0.9 < score.value < 0.99 and not score.passed
    cmp = compare(
        {"461": ref},
        {"461": got},
        (TensorSpec("461", "float32", (-1, 384)),),
        None,
        pooled=frozenset({"461"}),
    )
    assert cmp.classifier_output is None and cmp.top1_agreement is None
