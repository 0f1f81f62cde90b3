"""onnx2tf strategies for tflite-arm: the switches each stands for, what the converter reports when
one worked after others failed, a converter that crashes in one strategy run again with the
next, the refusal naming the node every strategy failed at, the model
prepared for onnx2tf (scope-safe node names, external data), and (slow, with the tflite
toolchain) a dynamic-shape model that only the fixed-shape strategy converts."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compilers import (
    CompileError,
    ToolchainError,
    UnsupportedOpError,
    _tflite_convert,
    tflite_arm,
    toolchains,
)
from compilers.tflite_arm import conversion_error, prepare_model, strategy_notes

SKIP_REASON = "tflite toolchain not installed: run `edgectl toolchains install tflite`"


def small_model(
    names: tuple[str, str] = ("Conv@0", "Softmax@0"), dynamic: bool = False, width: int = 4
) -> onnx.ModelProto:
    w = np.random.default_rng(0).normal(0, 0.5, (width, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name=names[0], pads=[1, 1, 1, 1]),
        helper.make_node("Softmax", ["c"], ["y"], name=names[1], axis=1),
    ]
    dims: list[int | str] = ["N", 3, "H", "W"] if dynamic else [1, 3, 8, 10]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], width, dims[2], dims[3]])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_strategies_and_their_switches() -> None:
    names = [s.name for s in _tflite_convert.STRATEGIES]
    assert names[0] == "default" and len(set(names)) == len(names) >= 5
    shapes = {"x": [1, 3, 48, 192]}
    by_name = {s.name: s for s in _tflite_convert.STRATEGIES}
    assert by_name["default"].switches(shapes) == "-rtpo erf"
    assert by_name["fixed-shapes"].switches(shapes) == "-rtpo erf -b 1 -ois x:1,3,48,192"
    assert by_name["no-onnxsim"].switches(shapes) == "-rtpo erf -b 1 -ois x:1,3,48,192 -nuo"
    # onnx2tf's Python API compares pseudo-op names in lower case; Erf is never a Flex op
    for strategy in _tflite_convert.STRATEGIES:
        pseudo = strategy.kwargs(shapes)["replace_to_pseudo_operators"]
        assert "erf" in pseudo and all(p == p.lower() for p in pseudo)
    assert by_name["keep-shapes"].kwargs(shapes)["keep_shape_absolutely_input_names"] == ["x"]
    assert "-dgc" in by_name["pseudo-ops"].switches(shapes) and "-rtpo" in by_name["pseudo-ops"].switches(
        shapes
    )
    assert by_name["fixed-shapes"].switches({}) == "-rtpo erf -b 1"


def test_failed_node_is_the_last_one_onnx2tf_names() -> None:
    lines = [
        "INFO: 1 / 3",
        "ERROR: onnx_op_name: wa/first",
        "noise",
        "\x1b[31mERROR:\x1b[0m onnx_op_name: /head/Add",
    ]
    assert _tflite_convert.failed_node(lines) == "/head/Add"
    assert _tflite_convert.failed_node(["ERROR: something else"]) is None


def test_tee_keeps_the_lines_and_passes_them_on() -> None:
    import io

    out = io.StringIO()
    tee = _tflite_convert._Tee(out, keep=2)
    tee.write("a\nb")
    tee.write("c\nd\n")
    assert out.getvalue() == "a\nbc\nd\n" and tee.lines == ["bc", "d"]


def test_prepare_model_renames_scope_unsafe_nodes(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    onnx.save(small_model(("Conv@0", "Conv_0")), source)
    prepared = prepare_model(source, tmp_path / "out.onnx")
    renamed, shapes = prepared.renamed, prepared.shapes
    got = onnx.load(tmp_path / "out.onnx")
    assert renamed == 1 and [n.name for n in got.graph.node] == ["Conv_0_1", "Conv_0"]
    assert [v.name for v in got.graph.input] == ["x"] and shapes == {"x": [1, 3, 8, 10]}


def test_prepare_model_keeps_external_data_and_leaves_dynamic_shapes_to_onnx2tf(tmp_path: Path) -> None:
    source = tmp_path / "src" / "m.onnx"
    source.parent.mkdir()
    model = small_model(dynamic=True, width=64)  # 7 KB of weights: above the 1 KB kept inline
    onnx.save(model, source, save_as_external_data=True, location="w.bin", size_threshold=0)
    (tmp_path / "work").mkdir()
    prepared = prepare_model(source, tmp_path / "work" / "model.onnx")
    renamed, shapes = prepared.renamed, prepared.shapes
    assert renamed == 2 and shapes == {}
    assert (tmp_path / "work" / "model.onnx.data").is_file()
    back = onnx.load(tmp_path / "work" / "model.onnx")
    assert onnx.numpy_helper.to_array(back.graph.initializer[0]).shape == (64, 3, 3, 3)


def test_strategy_note_names_what_worked_and_what_failed() -> None:
    result = {
        "strategy": "fixed-shapes",
        "switches": "-b 1 -ois x:1,3,8,10",
        "attempts": [{"strategy": "default", "error": "ValueError: Dimension -1 must be >= 0"}],
    }
    assert strategy_notes(result) == [
        "onnx2tf converted the model with strategy fixed-shapes (-b 1 -ois x:1,3,8,10) after 1 failed "
        "(default: ValueError: Dimension -1 must be >= 0)"
    ]
    assert strategy_notes({"strategy": "default", "attempts": []}) == []


def test_every_strategy_failing_at_a_node_names_op_node_and_target(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    onnx.save(small_model(("conv", "head_softmax")), source)
    attempts = [
        {"strategy": s.name, "error": "ValueError: bad", "node": "head_softmax"}
        for s in _tflite_convert.STRATEGIES
    ]
    err = conversion_error(source, attempts, "ValueError: bad axis")
    assert isinstance(err, UnsupportedOpError)
    assert str(err) == (
        "target tflite-arm can't take op Softmax (node 'head_softmax'): onnx2tf failed there with "
        f"{len(attempts)} strategies (ValueError: bad axis); try another --input-shape, --precision fp16, "
        "or compiling for onnx-x86"
    )
    plain = conversion_error(source, [{"strategy": "default", "error": "x"}], "Killed")
    assert (
        type(plain) is CompileError
        and str(plain) == "onnx2tf could not convert the model with 1 strategy: Killed"
    )


def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result: dict[str, object], status: int) -> Path:
    script = tmp_path / "fake_convert.py"
    script.write_text(
        "import json, sys\nfrom pathlib import Path\nargs = sys.argv[1:]\n"
        "Path(args[args.index('--result') + 1]).write_text(json.dumps("
        + repr(result)
        + "))\n"
        + textwrap.dedent(f"sys.exit({status})\n")
    )
    monkeypatch.setattr(tflite_arm, "SCRIPT", script)
    source = tmp_path / "m.onnx"
    onnx.save(small_model(("conv", "sm")), source)
    return source


def test_converter_failure_after_all_strategies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = [
        {"strategy": "default", "error": "e"},
        {"strategy": "fixed-shapes", "error": "e", "node": "sm"},
    ]
    failure = {"ok": False, "error_kind": "conversion", "error": "ValueError: axis", "attempts": attempts}
    source = fake(tmp_path, monkeypatch, failure, 1)
    with pytest.raises(UnsupportedOpError) as err:
        tflite_arm.run_converter(
            Path(sys.executable),
            ["--result", str(tmp_path / "result.json")],
            tmp_path,
            30,
            lambda _m: None,
            source,
        )
    assert (err.value.target, err.value.op, err.value.node) == ("tflite-arm", "Softmax", "sm")
    assert "with 2 strategies" in str(err.value) and "\n" not in str(err.value)


def _crashing_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_in: set[str], after: bool
) -> None:
    """A converter that dies of SIGSEGV in the strategies named in ``crash_in`` (after converting,
    while quantizing, when ``after``) and succeeds in the others, as the real one prints."""
    script = tmp_path / "crash_convert.py"
    names = [s.name for s in _tflite_convert.STRATEGIES]
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os, signal, sys
            from pathlib import Path
            args = sys.argv[1:]
            names = {names!r}
            if "--strategies" in args:
                names = [n for n in names if n in args[args.index("--strategies") + 1].split(",")]
            for i, name in enumerate(names, 1):
                line = f"[edgefleet] trying strategy {{i}}/{{len(names)}} {{name}}: about (switches)"
                print(line, flush=True)
                if name in {sorted(crash_in)!r}:
                    if {after!r}:
                        print("[edgefleet] reading the converted models' inputs and outputs", flush=True)
                    os.kill(os.getpid(), signal.SIGSEGV)
                result = {{"ok": True, "strategy": name, "attempts": [], "files": {{}}, "io": {{}}}}
                Path(args[args.index("--result") + 1]).write_text(json.dumps(result))
                sys.exit(0)
            """
        )
    )
    monkeypatch.setattr(tflite_arm, "SCRIPT", script)


def test_a_converter_that_crashes_in_a_strategy_goes_on_with_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crashing_converter(tmp_path, monkeypatch, {"default", "fixed-shapes"}, after=False)
    said: list[str] = []
    result = tflite_arm.run_converter(
        Path(sys.executable), ["--result", str(tmp_path / "result.json")], tmp_path, 30, said.append, tmp_path
    )
    third = _tflite_convert.STRATEGIES[2].name
    assert result["strategy"] == third
    assert [a["strategy"] for a in result["attempts"]] == ["default", "fixed-shapes"]
    assert all("killed by signal 11" in a["error"] for a in result["attempts"])
    assert any(
        f"died (killed by signal 11) in strategy default: trying fixed-shapes, {third}" in m for m in said
    )


def test_a_converter_that_crashes_after_converting_is_not_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crashing_converter(tmp_path, monkeypatch, {"default"}, after=True)
    with pytest.raises(CompileError, match=r"the converter died \(killed by signal 11\)"):
        tflite_arm.run_converter(
            Path(sys.executable),
            ["--result", str(tmp_path / "r.json")],
            tmp_path,
            30,
            lambda _m: None,
            tmp_path,
        )


def test_a_converter_that_crashes_in_its_last_strategy_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = _tflite_convert.STRATEGIES[-1].name
    _crashing_converter(tmp_path, monkeypatch, {last}, after=False)
    args = ["--result", str(tmp_path / "r.json"), "--strategies", last]
    with pytest.raises(CompileError, match=r"the converter died \(killed by signal 11\)"):
        tflite_arm.run_converter(Path(sys.executable), args, tmp_path, 30, lambda _m: None, tmp_path)


def test_int8_quantization_failure_suggests_fp16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failure = {
        "ok": False,
        "error_kind": "quantization",
        "error": "onnx2tf finished without the full_integer_quant model",
    }
    source = fake(tmp_path, monkeypatch, failure, 1)
    # a ToolchainError: this precision can't be made, another can (auto goes on to FP16)
    with pytest.raises(ToolchainError, match=r"could not quantize it to INT8 .*; try --precision fp16$"):
        tflite_arm.run_converter(
            Path(sys.executable),
            ["--result", str(tmp_path / "result.json")],
            tmp_path,
            30,
            lambda _m: None,
            source,
        )


# -- slow: the real converter ----------------------------------------------------------------------


@pytest.mark.slow
def test_dynamic_model_converts_with_the_fixed_shape_strategy(tmp_path: Path) -> None:
    """Given dims onnx2tf can't size (what intake fixes for a compile), the default strategy fails
    and the next one, with the shapes passed as ``-b``/``-ois``, converts it."""
    try:
        python = toolchains.python_for("tflite")
    except ToolchainError:
        pytest.skip(SKIP_REASON)
    source = small_model(("conv", "softmax"), dynamic=True)
    dims = source.graph.input[0].type.tensor_type.shape.dim
    dims[0].Clear()
    dims[0].dim_value = -1  # as paddle2onnx writes a dynamic batch: onnx2tf's default fails on it
    model = tmp_path / "model.onnx"
    onnx.save(source, model)
    args = [
        "--model",
        str(model),
        "--output-dir",
        str(tmp_path / "out"),
        "--result",
        str(tmp_path / "result.json"),
    ]
    args += ["--input-shape", "x", "1,3,8,10", "--strategies", "default,fixed-shapes"]
    lines: list[str] = []
    result = tflite_arm.run_converter(python, args, tmp_path, 600, lines.append, model)
    assert result["strategy"] == "fixed-shapes" and result["switches"] == "-rtpo erf -b 1 -ois x:1,3,8,10"
    assert [a["strategy"] for a in result["attempts"]] == ["default"]
    assert result["attempts"][0]["error"] == "ValueError: Dimension -1 must be >= 0"
    assert any(line.startswith("trying strategy 2/2 fixed-shapes") for line in lines)
    assert [int(d) for d in result["io"]["float32"]["inputs"][0]["shape"]] == [1, 8, 10, 3]
    assert json.loads((tmp_path / "result.json").read_text())["ok"] is True


def test_onnx2tf_spelling_of_a_leading_slash_is_undone(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    onnx.save(small_model(("/encoder/conv", "/head/softmax")), source)
    err = conversion_error(source, [{"strategy": "default", "error": "e", "node": "wa/encoder/conv"}], "boom")
    assert isinstance(err, UnsupportedOpError) and (err.op, err.node) == ("Conv", "/encoder/conv")


def test_a_failure_after_the_float32_model_is_a_quantization_failure(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    assert _tflite_convert._stage(model, tmp_path / "out") == "conversion"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model_float32.tflite").write_bytes(b"x")
    assert _tflite_convert._stage(model, tmp_path / "out") == "quantization"


def test_int8_with_an_integer_input_is_refused_before_converting() -> None:
    from agent.contracts.manifest import TensorSpec
    from compilers import TargetError
    from compilers.tflite_arm import check_int8_inputs

    check_int8_inputs((TensorSpec("x", "float32", (-1, 3, 8, 8)),))
    with pytest.raises(TargetError) as err:
        check_int8_inputs((TensorSpec("ids", "int64", (-1, 32)), TensorSpec("mask", "int64", (-1, 32))))
    assert str(err.value) == (
        "target tflite-arm can't calibrate full-integer INT8 for integer input 'ids' (int64), "
        "'mask' (int64): onnx2tf calibrates every input as float32; try --precision fp16"
    )
