"""Mixed precision: ranking layers by quantization error, keeping them in float per target
(ONNX Runtime ``nodes_to_exclude``; Q/DQ removed for TensorRT), and the compile loop that does it
when INT8 fails its gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from agent.contracts.manifest import Manifest, TensorSpec
from compilers import CompileOptions, ValidationGateError, compile_model, ort_tools
from compilers.metrics import top1_agreement
from compilers.mixed import (
    allowance,
    layer_costs_from_activations,
    quantized_nodes,
    rank_qdq_layers,
    strip_qdq,
    with_float_producers,
)
from tests.compilers.accuracy_models import sensitive_model, write_files
from tests.compilers.compiler_fixtures import ModelFiles, leftovers

INPUTS = (TensorSpec("x", "float32", (-1, 16)),)
QUICK: dict[str, Any] = {"latency_runs": 0, "samples": 2}
TRT = ort_tools.QdqSettings(activation_type="QInt8", symmetric=True, quantize_bias=False)


@pytest.fixture(scope="module")
def sens(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return write_files(tmp_path_factory.mktemp("sens"), sensitive_model(), "sens", (16,))


def _run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return np.asarray(
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    )


def test_allowance_is_a_share_of_the_layers() -> None:
    assert allowance(ranked=40, max_share=0.25, quantizable=40) == 10
    assert allowance(ranked=4, max_share=0.25, quantizable=40) == 4  # no more than were ranked
    assert allowance(ranked=3, max_share=0.1, quantizable=3) == 1  # at least one
    assert allowance(ranked=0, max_share=0.5, quantizable=0) == 0


@pytest.fixture(scope="module")
def trt_qdq(sens: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("qdq")
    pre, qdq = root / "pre.onnx", root / "qdq.onnx"
    ort_tools.pre_process(sens.model, pre)
    ort_tools.quantize_qdq(pre, qdq, dict(np.load(sens.calibration)), INPUTS, TRT)
    return pre, qdq


def test_the_sensitive_layer_ranks_first(sens: ModelFiles, trt_qdq: tuple[Path, Path]) -> None:
    ranked = rank_qdq_layers(sens.model, trt_qdq[1], dict(np.load(sens.calibration)), INPUTS)
    assert ranked[0].node == "sensitive"
    assert ranked[0].cost > 100 * max(c.cost for c in ranked[1:])
    assert {c.node for c in ranked} == quantized_nodes(onnx.load(str(trt_qdq[1])))


def test_strip_qdq_keeps_one_layer_float_and_restores_accuracy(
    sens: ModelFiles, trt_qdq: tuple[Path, Path]
) -> None:
    pre, qdq_path = trt_qdq
    qdq = onnx.load(str(qdq_path))
    x = np.load(sens.validation)["x"]
    ref = _run(sens.model, x)
    assert top1_agreement(ref, _run(qdq, x)) < 0.5
    stripped = strip_qdq(qdq, ["sensitive"], onnx.load(str(pre)))
    onnx.checker.check_model(stripped)
    # one layer of ten back in float: from almost no agreement to almost all (the gate's last
    # percent takes a second layer, which the compile loop adds)
    assert top1_agreement(ref, _run(stripped, x)) >= 0.95
    producer = {o: n for n in stripped.graph.node for o in n.output}
    node = next(n for n in stripped.graph.node if n.name == "sensitive")
    assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in node.input)
    weights = {i.name: i for i in stripped.graph.initializer}
    w = next(i for i in node.input if i in weights)
    original = next(i for i in sensitive_model().graph.initializer if i.name == "sens")
    assert np.array_equal(onnx.numpy_helper.to_array(weights[w]), onnx.numpy_helper.to_array(original))
    assert [o.name for o in stripped.graph.output] == ["scores"]
    # every other layer keeps its Q/DQ
    assert quantized_nodes(stripped) == quantized_nodes(qdq) - {"sensitive"}


def test_float_producers_of_an_excluded_layer(sens: ModelFiles) -> None:
    model = onnx.load(str(sens.model))
    assert with_float_producers(model, ["sensitive"]) == ("sensitive", "wide")
    # relu0's output feeds only fc1, so it joins; a producer whose output others read does not
    assert with_float_producers(model, ["fc1"]) == ("fc1", "relu0")
    assert with_float_producers(model, ["fc1", "wide"]) == ("fc1", "wide", "relu0", "relu3")


@pytest.mark.parametrize(("profile", "float_in"), [("x86-64-avx2", "fp32"), ("jetson-orin-nano", "fp16")])
def test_int8_that_fails_its_gate_ships_mixed(
    sens: ModelFiles, tmp_path: Path, profile: str, float_in: str
) -> None:
    out = tmp_path / "b"
    opts = CompileOptions(calibration=sens.calibration, validation=sens.validation, **QUICK)
    report = compile_model(sens.model, profile, out, opts)
    assert report.precision == "int8"
    assert report.mixed is not None and report.mixed.float_nodes[0] == "sensitive"
    # onnx-x86: one ranked layer is the first share here (a quarter of the layers), and it adds
    # the producer 'wide', whose output only 'sensitive' reads (ORT would quantize it for wide's
    # INT8 kernel); TensorRT: the search at the outputs chose up to the allowance (3), bisected
    if float_in == "fp32":
        assert report.mixed.float_nodes == ("sensitive", "wide")
    else:
        assert 1 <= len(report.mixed.float_nodes) <= 2 and 2 <= report.mixed.attempts <= 3
    assert report.mixed.float_precision == float_in
    plain = compile_model(
        sens.model, profile, tmp_path / "plain", CompileOptions(calibration=sens.calibration,
        validation=sens.validation, min_agreement=0.0, calibration_method="MinMax", **QUICK),
    )  # fmt: skip
    assert plain.mixed is None and report.mixed.int8_size_bytes == plain.size_bytes != report.size_bytes
    assert all(m.passed for m in report.metrics) and report.top1_agreement is not None
    assert report.top1_agreement >= 0.99
    assert any(a.startswith("int8 (MinMax): top-1 agreement") for a in report.attempts)
    manifest = Manifest.from_json((out / "manifest.json").read_text())
    assert manifest.validation is not None and manifest.validation.mixed == report.mixed
    assert manifest.build["float_nodes"] == list(report.mixed.float_nodes)
    assert any("kept in float" in n for n in manifest.validation.notes)
    cost = f"mixed precision cost: {report.size_bytes} B against {plain.size_bytes} B all-INT8"
    assert any(n.startswith(cost) and "latency not measured" in n for n in manifest.validation.notes)
    assert json.loads((out / "manifest.json").read_text())["validation"]["metrics"][0]["metric"] == "top1"
    assert leftovers(tmp_path, "b") == ["b"]  # the refused attempts are gone
    assert leftovers(tmp_path, "plain") == ["plain"]


def test_x86_bundle_excludes_the_layers_from_quantization(sens: ModelFiles, tmp_path: Path) -> None:
    opts = CompileOptions(calibration=sens.calibration, validation=sens.validation, **QUICK)
    report = compile_model(sens.model, "x86-64-avx2", tmp_path / "b", opts)
    assert report.mixed is not None
    model = onnx.load(str(tmp_path / "b" / "model.onnx"))
    inits = {i.name for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    for (
        name
    ) in report.mixed.float_nodes:  # FP32 weights (an input may come dequantized from an INT8 producer)
        assert any(i in inits and i in {"wide", "sens"} for i in nodes[name].input)
    assert "sensitive" not in quantized_nodes(model)  # nothing quantized reaches it
    assert {"fc0", "fc1", "fc2", "fc3"} <= quantized_nodes(model)


def test_without_mixed_the_gate_refuses_and_leaves_nothing(sens: ModelFiles, tmp_path: Path) -> None:
    opts = CompileOptions(calibration=sens.calibration, validation=sens.validation, mixed=False, **QUICK)
    with pytest.raises(ValidationGateError) as err:
        compile_model(sens.model, "x86-64-avx2", tmp_path / "b", opts)
    assert "tried int8 (MinMax); int8 (Entropy); int8 (Percentile)" in str(err.value)
    assert leftovers(tmp_path, "b") == []


def test_a_named_calibration_method_is_the_only_one_tried(sens: ModelFiles, tmp_path: Path) -> None:
    opts = CompileOptions(
        calibration=sens.calibration, validation=sens.validation, calibration_method="Percentile", **QUICK
    )
    report = compile_model(sens.model, "jetson-orin-nano", tmp_path / "b", opts)
    assert report.calibration_method == "Percentile"
    assert report.manifest.build["quantization"]["calibration"] == "Percentile"
    assert not any("(MinMax)" in a or "(Entropy)" in a for a in report.attempts)


def test_strip_qdq_keeps_a_relu_the_quantizer_folded(tmp_path: Path) -> None:
    """ONNX Runtime's asymmetric quantization drops a Relu after a Conv (the Q/DQ range does
    its work); bypassing that Q/DQ pair would drop the Relu too. Keeping the Conv float must not."""
    from tests.compilers.compiler_fixtures import cnn_model, images

    src, pre, qdq = tmp_path / "cnn.onnx", tmp_path / "pre.onnx", tmp_path / "qdq.onnx"
    onnx.save(cnn_model(), src)
    specs = (TensorSpec("image", "float32", (-1, 3, 8, 8)),)
    ort_tools.pre_process(src, pre)
    ort_tools.quantize_qdq(pre, qdq, {"image": images(32)}, specs, ort_tools.QdqSettings())
    model = onnx.load(str(qdq))
    assert "relu1" not in {n.name for n in model.graph.node}  # folded
    stripped = strip_qdq(model, ["conv1"], onnx.load(str(pre)))
    x = images(16, seed=5)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]

    def error(m: onnx.ModelProto) -> float:
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return float(np.max(np.abs(sess.run(None, {"image": x})[0] - ref)))

    # Without the Relu the scores drift by about a third of their range (0.56 of 1.55 here);
    # with it, a float conv does no worse than the INT8 one.
    assert error(stripped) <= error(model) + 1e-3


def test_a_graph_output_is_ranked_channel_by_channel() -> None:
    # A detector head: Concat of boxes in pixels [1, 4, 50] and scores in [0, 1] [1, 3, 50]. One
    # INT8 scale on the output sized for the boxes rounds the scores to 0: the tensor's noise
    # power is tiny (the boxes carry it), but the score channels are lost.
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    boxes = rng.uniform(0, 320, size=(1, 4, 50))
    scores = rng.uniform(0, 1, size=(1, 3, 50)) ** 3
    out = np.concatenate([boxes, scores], axis=1)
    lost = out.copy()
    lost[:, 4:] = 0.0
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["b"], name="box"),
            helper.make_node("Sigmoid", ["x2"], ["s"], name="score"),
            helper.make_node("Concat", ["b", "s"], ["out"], name="head", axis=1),
        ],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "x2")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 7, 50])],
    )
    model = helper.make_model(graph)
    flat = [boxes.ravel()], [scores.ravel()], [out.ravel()], [lost.ravel()]
    matched = {
        "b": {"float": flat[0], "pre_qdq": flat[0], "post_qdq": flat[0]},
        "s": {"float": flat[1], "pre_qdq": flat[1], "post_qdq": flat[1]},
        "out": {"float": flat[2], "pre_qdq": flat[2], "post_qdq": flat[3]},
    }
    whole = float(np.sum((out - lost) ** 2) / np.sum(out**2))
    assert whole < 0.01  # what the tensor as a whole shows
    ranked = layer_costs_from_activations(model, {"box", "score", "head"}, matched, {}, {})
    assert ranked[0].node == "head"
    assert ranked[0].cost == pytest.approx(1.0)  # a score channel entirely lost


def test_mixed_stops_after_the_whole_allowance_fails(sens: ModelFiles, tmp_path: Path) -> None:
    # No INT8 layer gives a cosine of exactly 1: each order is tried at three quarters of the
    # allowance, the nearer one once more at the whole of it, and no smaller step is tried (each
    # would cost a full quantization and validation).
    opts = CompileOptions(
        calibration=sens.calibration,
        validation=sens.validation,
        calibration_method="MinMax",
        metric="cosine",
        metric_threshold=1.0,
        mixed_max_share=0.5,
        **QUICK,
    )
    said: list[str] = []
    with pytest.raises(ValidationGateError) as err:
        compile_model(sens.model, "x86-64-avx2", tmp_path / "b", opts, said.append)
    kept = [s for s in said if s.startswith("mixed precision: keeping")]
    hows = [s.split(", ", 1)[1].split(" (")[0] for s in kept]
    assert hows[:2] == ["costliest first", "from both ends of the graph"]
    counts = []
    for line in kept:
        head = line.removeprefix("mixed precision: keeping ").split(" layer")[0]
        k, ranked = (int(x) for x in head.split(" of "))
        counts.append(k)
    assert ranked // 2 > int(0.375 * ranked)  # the whole allowance holds more than its first share
    assert counts[:2] == [int(0.375 * ranked)] * 2
    assert len(kept) == 3 and counts[2] == ranked // 2
    assert hows[2] in (f"{h}, the whole allowance" for h in hows[:2])
    assert sum("did not pass" in s for s in said) == 3
    assert str(err.value).count("layer(s) in float") == 3
    assert leftovers(tmp_path, "b") == []


def test_gate_nearness_compares_unlike_metrics() -> None:
    from compilers.metrics import OutputScore
    from compilers.mixed import gate_nearness

    cos = OutputScore("a", "cosine", 0.98, 0.99)
    err = OutputScore("b", "relative_error", 0.02, 0.01, higher_is_better=False)
    assert gate_nearness([cos]) == pytest.approx(0.98 / 0.99)
    assert gate_nearness([err]) == pytest.approx(0.5)
    assert gate_nearness([cos, err]) == pytest.approx(0.5)  # the worst output decides
    assert gate_nearness([OutputScore("a", "cosine", float("nan"), 0.99)]) == 0.0
    assert gate_nearness([]) == 0.0


def test_mixed_ships_the_fewest_layers_after_the_whole_allowance_passes(
    sens: ModelFiles, tmp_path: Path
) -> None:
    opts = CompileOptions(
        calibration=sens.calibration,
        validation=sens.validation,
        calibration_method="MinMax",
        mixed_max_share=0.5,
        **QUICK,
    )
    said: list[str] = []
    report = compile_model(sens.model, "jetson-orin-nano", tmp_path / "b", opts, said.append)
    kept = [
        int(s.split(" of ")[0].rpartition(" ")[2]) for s in said if s.startswith("mixed precision: keeping")
    ]
    # the order's first share (three quarters of the allowance) first, then halved towards the
    # fewest that pass
    assert len(kept) >= 2 and kept[0] == max(kept) and kept[1] == kept[0] // 2
    assert report.mixed is not None and report.mixed.attempts == len(kept)
    assert len(report.mixed.float_nodes) < kept[0]
    assert report.mixed.float_nodes[0] == "sensitive"
    assert leftovers(tmp_path, "b") == ["b"]


def test_from_the_ends_alternates_first_and_last_layers() -> None:
    from compilers.mixed import LayerCost, from_the_ends

    ranked = [LayerCost(f"n{p}", "Conv", 1.0 / (p + 1), p) for p in (3, 0, 4, 1, 2)]
    assert [c.node for c in from_the_ends(ranked)] == ["n0", "n4", "n1", "n3", "n2"]
    assert from_the_ends([LayerCost("x", "Conv", 1.0)]) == []  # no position known


def _head_model() -> onnx.ModelProto:
    """A detector-like head: box offsets in the hundreds and a sigmoid score near 0.003,
    concatenated into one ``[N, 5, 64]`` output, the way YOLO-family exports end."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w1 = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    wr = (rng.normal(0, 1, (4, 8, 1, 1)) * 50).astype(np.float32)
    wo = rng.normal(0, 0.3, (1, 8, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["f0"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["f0"], ["f"], name="relu"),
        helper.make_node("Conv", ["f", "wr"], ["reg"], name="reg"),
        helper.make_node("Conv", ["f", "wo"], ["obj0"], name="obj"),
        helper.make_node("Add", ["obj0", "bias"], ["obj1"], name="obj_bias"),
        helper.make_node("Sigmoid", ["obj1"], ["score"], name="score"),
        helper.make_node("Concat", ["reg", "score"], ["cat"], name="head_concat", axis=1),
        helper.make_node("Reshape", ["cat", "shape"], ["head"], name="head_reshape"),
    ]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("head", TensorProto.FLOAT, ["n", 5, 64])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(wr, "wr"),
            numpy_helper.from_array(wo, "wo"),
            numpy_helper.from_array(np.array(-6.0, np.float32), "bias"),
            numpy_helper.from_array(np.array([-1, 5, 64], np.int64), "shape"),
        ],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_join_of_unlike_ranges_and_what_follows_it_are_found() -> None:
    from compilers.mixed import mixed_range_joins

    model = _head_model()
    acts = {
        "reg": [np.full((1, 4, 8, 8), 300.0, np.float32)],
        "score": [np.full((1, 1, 8, 8), 0.003, np.float32)],
        "f": [np.ones((1, 8, 8, 8), np.float32)],
    }
    assert mixed_range_joins(model, acts) == {"head_concat": 2, "head_reshape": 2}
    alike = {**acts, "score": [np.full((1, 1, 8, 8), 100.0, np.float32)]}
    assert mixed_range_joins(model, alike) == {}  # ranges within 16x of each other: no join


def test_joined_layers_fit_the_allowance_or_are_not_tried() -> None:
    from compilers.mixed import LayerCost, joined_layers

    ranked = [
        LayerCost("tail", "Reshape", 0.1, 7, join=2),
        LayerCost("stem", "Conv", 0.5, 0),
        LayerCost("cat", "Concat", 0.01, 6, join=2),
    ]
    assert [c.node for c in joined_layers(ranked, 4)] == ["cat", "tail"]  # graph order
    assert joined_layers(ranked, 1) == []  # the join is larger than the allowance
    assert joined_layers(ranked[1:2], 4) == []


def test_a_detector_head_ships_int8_with_its_join_in_float(tmp_path: Path) -> None:
    files = write_files(tmp_path / "m", _head_model(), "head", (3, 8, 8))
    opts = CompileOptions(
        calibration=files.calibration,
        validation=files.validation,
        calibration_method="MinMax",
        mixed_max_share=0.5,  # 3 of the 7 layers: the join (2) fits
        **QUICK,
    )
    said: list[str] = []
    report = compile_model(files.model, "x86-64-avx512-vnni", tmp_path / "b", opts, said.append)
    # Plain INT8 rounds the score channel away (one scale for boxes in the hundreds and scores
    # near 0.003); the join and the Reshape after it in float keep it.
    assert report.mixed is not None and report.precision == "int8"
    # the join (bisection may drop the Reshape after it), with the producers only it reads, which
    # the x86 target keeps float beside it; never the backbone
    assert "head_concat" in report.mixed.float_nodes and "stem" not in report.mixed.float_nodes
    kept = [s for s in said if s.startswith("mixed precision: keeping")]
    assert kept and "joins of tensors of unlike ranges" in kept[0]


def test_greedy_float_layers_finds_layers_that_matter_only_together() -> None:
    from compilers.mixed import greedy_float_layers

    # 'a' alone helps most; 'c' helps only once 'a' is in float; 'b' helps a little alone
    def agreement(nodes: tuple[str, ...]) -> float:
        got = set(nodes)
        return 0.5 + 0.3 * ("a" in got) + 0.05 * ("b" in got) + 0.15 * ({"a", "c"} <= got) - 0.01 * len(got)

    calls: list[tuple[str, ...]] = []

    def counted(nodes: tuple[str, ...]) -> float:
        calls.append(nodes)
        return agreement(nodes)

    def never() -> float:
        return 0.0

    pool = ["b", "c", "a", "d"]
    assert greedy_float_layers(pool, counted, 2, never, 60.0) == [("a", 0.79), ("c", 0.93)]
    assert len(calls) == 4 + 3  # every layer left, at each step
    assert [n for n, _ in greedy_float_layers(pool, agreement, 9, never, 60.0)][:3] == ["a", "c", "b"]
    assert greedy_float_layers([], agreement, 3, never, 60.0) == []


def test_greedy_float_layers_keeps_to_its_time() -> None:
    from compilers.mixed import greedy_float_layers

    now = [0.0]

    def clock() -> float:
        return now[0]

    def slow(nodes: tuple[str, ...]) -> float:  # each try takes a second; 'n0' best alone, then 'n1', ...
        now[0] += 1.0
        return sum(1.0 / (1 + int(n[1:])) for n in nodes)

    pool = [f"n{i}" for i in range(10)]
    # out of time mid-step: that step's best so far is the last layer chosen
    assert [n for n, _ in greedy_float_layers(pool, slow, 3, clock, 4.5)] == ["n0"]
    # 10 tries for the first step leave 10 s for 4 more steps: the later steps try only the two
    # layers that scored best alone, so the 13 s budget is kept
    now[0] = 0.0
    calls: list[int] = []

    def counted(nodes: tuple[str, ...]) -> float:
        calls.append(len(nodes))
        return slow(nodes)

    chosen = [n for n, _ in greedy_float_layers(pool, counted, 5, clock, 20.0)]
    assert chosen[:3] == ["n0", "n1", "n2"] and now[0] <= 21.0
    assert calls.count(1) == 10 and calls.count(2) < 9


def test_the_search_at_the_outputs_finds_the_sensitive_layer(
    sens: ModelFiles, trt_qdq: tuple[Path, Path]
) -> None:
    from compilers.mixed import SEARCH_POOL, LayerCost, search_at_outputs

    cal = dict(np.load(sens.calibration))
    ranked = rank_qdq_layers(sens.model, trt_qdq[1], cal, INPUTS)
    # the noise ranking turned upside down: the search scores at the outputs, not by that order
    upside_down = tuple(reversed(ranked))
    found = search_at_outputs(sens.model, trt_qdq[1], cal, INPUTS, upside_down, 2)
    assert found[0].node == "sensitive" and 1 <= len(found) <= 2
    assert all(isinstance(c, LayerCost) for c in found)
    many = tuple(LayerCost(f"n{i}", "Relu", 0.0, i) for i in range(SEARCH_POOL + 1))
    assert search_at_outputs(sens.model, trt_qdq[1], cal, INPUTS, many, 2) == []  # too many to search


def test_tensorrt_mixed_records_layers_chosen_at_the_outputs(sens: ModelFiles, tmp_path: Path) -> None:
    from compilers.mixed import SEARCHED_BY

    opts = CompileOptions(
        calibration=sens.calibration, validation=sens.validation, calibration_method="MinMax", **QUICK
    )
    said: list[str] = []
    report = compile_model(sens.model, "jetson-orin-nano", tmp_path / "b", opts, said.append)
    assert report.mixed is not None and report.mixed.float_nodes[0] == "sensitive"
    assert report.mixed.ranked_by == SEARCHED_BY
    assert any("by their effect at the outputs" in s for s in said)
    assert any("(chosen one by one at the outputs)" in n for n in report.notes)


def test_output_similarity_scores_what_fp32_defines() -> None:
    from compilers.mixed import _similarity

    ref = np.array([1.0, 2.0, np.nan], np.float32)
    assert _similarity(ref, np.array([1.0, 2.0, 5.0], np.float32)) == pytest.approx(1.0)
    assert _similarity(ref, np.array([1.0, np.inf, 0.0], np.float32)) == 0.0
    assert _similarity(np.zeros(3, np.float32), np.zeros(3, np.float32)) == 1.0
    assert _similarity(np.array([1, 2, 3]), np.array([1, 2, 4])) == pytest.approx(2 / 3)
    assert _similarity(ref, ref[:2]) == 0.0
