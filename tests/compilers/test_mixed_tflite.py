"""Mixed precision for ``tflite-arm``: TensorFlow's QuantizationDebugger inside the converter
environment ranks the layers and keeps the costliest ops float (``denylisted_nodes``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.contracts.manifest import Manifest
from compilers import CompileOptions, compile_model
from compilers._tflite_convert import parse_args, with_float_producers
from compilers.base import CompileJob
from compilers.tflite_arm import TfliteArmTarget, _mixed_args
from device_profiles import load_profile
from tests.compilers.accuracy_models import sensitive_model, write_files
from tests.compilers.compiler_fixtures import require_tflite

# A chain a -> b -> c -> d, plus b also read by e: (op, inputs, outputs) as the converter lists them.
GRAPH = [
    ("FULLY_CONNECTED", ["x", "w1"], ["a"]),
    ("FULLY_CONNECTED", ["a", "w2"], ["b"]),
    ("FULLY_CONNECTED", ["b", "w3"], ["c"]),
    ("FULLY_CONNECTED", ["c", "w4"], ["d"]),
    ("FULLY_CONNECTED", ["b", "w5"], ["e"]),
]


def test_float_producers_join_only_when_nothing_else_reads_them() -> None:
    assert with_float_producers(GRAPH, ["d"]) == ["d", "c"]  # c feeds only d
    assert with_float_producers(GRAPH, ["c"]) == ["c"]  # b also feeds e
    assert with_float_producers(GRAPH, ["c", "e"]) == ["c", "e", "b"]


def test_converter_flags_for_mixed_precision_and_ranking() -> None:
    profile = load_profile("raspberry-pi-5")
    job = CompileJob(
        Path("m.onnx"), profile, "int8", None, (), (), {"float_nodes": ("t1", "t2"), "rank_layers": True}
    )
    assert _mixed_args(job) == (
        ("t1", "t2"),
        ["--mixed-float-node", "t1", "--mixed-float-node", "t2", "--rank-layers"],
    )
    assert _mixed_args(
        CompileJob(Path("m.onnx"), profile, "fp16", None, (), (), {"float_nodes": ("t1",)})
    ) == ((), [])
    args = parse_args(
        ["--model", "m", "--output-dir", "o", "--result", "r", "--mixed-float-node", "t1", "--rank-layers"]
    )
    assert args.mixed_float_node == ["t1"] and args.rank_layers
    assert TfliteArmTarget.calibration_methods == ("MinMax", "Dynamic")


@pytest.mark.slow
def test_tflite_int8_that_fails_its_gate_ships_mixed(tmp_path: Path) -> None:
    require_tflite()
    files = write_files(tmp_path / "m", sensitive_model(), "sens", (16,))
    opts = CompileOptions(
        precision="int8",
        calibration=files.calibration,
        validation=files.validation,
        latency_runs=0,
        samples=2,
    )
    report = compile_model(files.model, "raspberry-pi-5", tmp_path / "b", opts)
    assert report.mixed is not None and report.top1_agreement is not None and report.top1_agreement >= 0.99
    assert report.attempts[0].startswith("int8 (MinMax): top-1 agreement")
    assert "QuantizationDebugger" in report.mixed.ranked_by
    assert len(report.mixed.float_nodes) == 2  # the head and the wide layer that feeds only it
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert manifest.build["float_nodes"] == list(report.mixed.float_nodes)
    # the mixed attempt requantized the INT8 attempt's saved model: onnx2tf ran once
    assert manifest.build["conversion_reused"] is True
    assert manifest.inputs[0].quantization is None  # the mixed model takes float32


def test_float_attempts_after_a_refused_int8_reuse_its_conversion(tmp_path: Path) -> None:
    require_tflite()
    files = write_files(tmp_path / "m", sensitive_model(), "sens", (16,))
    opts = CompileOptions(
        precision="auto",
        calibration=files.calibration,
        validation=files.validation,
        latency_runs=0,
        samples=2,
        mixed=False,
    )
    report = compile_model(files.model, "raspberry-pi-5", tmp_path / "b", opts)
    assert report.precision in ("fp16", "fp32") and report.attempts[0].startswith("int8")
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert manifest.build["conversion_reused"] is True  # the float model the INT8 run made
    assert not list((tmp_path).glob("b.*"))  # no staging or scratch left beside the bundle


def test_joins_of_unlike_ranges_in_a_tflite_graph() -> None:
    from compilers._tflite_convert import graph_joins

    graph = [
        ("CONV_2D", ["x", "w"], ["f"]),
        ("CONV_2D", ["f", "wr"], ["reg"]),
        ("LOGISTIC", ["f"], ["score"]),
        ("CONCATENATION", ["reg", "score"], ["cat"]),
        ("RESHAPE", ["cat", "shape"], ["head"]),
    ]
    peaks = {"x": 1.0, "f": 2.0, "reg": 300.0, "score": 0.003, "cat": 300.0, "head": 300.0}
    assert graph_joins(graph, peaks) == {"cat": 2, "head": 2}
    assert graph_joins(graph, {**peaks, "score": 100.0}) == {}


@pytest.mark.slow
def test_a_detector_head_ships_tflite_int8_with_its_join_in_float(tmp_path: Path) -> None:
    require_tflite()
    from tests.compilers.test_mixed import QUICK, _head_model

    files = write_files(tmp_path / "m", _head_model(), "head", (3, 8, 8))
    opts = CompileOptions(
        calibration=files.calibration, validation=files.validation, mixed_max_share=0.5, **QUICK
    )
    said: list[str] = []
    report = compile_model(files.model, "raspberry-pi-5", tmp_path / "b", opts, said.append)
    kept = [s for s in said if s.startswith("mixed precision: keeping")]
    assert kept and "joins of tensors of unlike ranges" in kept[0]
    assert report.precision == "int8" and report.mixed is not None
    assert any("concat" in n.lower() for n in report.mixed.float_nodes)
