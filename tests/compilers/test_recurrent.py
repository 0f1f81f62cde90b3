"""Recurrent models as PyTorch exports them: the state output ``Y_h`` is ``[directions, N,
hidden]``, its samples on axis 1, and TensorFlow's converter writes a Keras RNN loop as Flex
TensorList ops unless onnx2tf unrolls it.

* the compile's validation, its self-test samples and the device's self-test join runs along
  each output's sample axis (:mod:`agent.runtimes.samples`);
* the TFLite conversion unrolls recurrent ops, so LiteRT runs the bundle;
* mixed precision never keeps every quantizable layer in float (an INT8 bundle with no INT8
  layer would be a float model under another name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.contracts.manifest import Manifest
from agent.runtimes import load_bundle, verify_bundle_dir
from agent.runtimes.samples import first_rows, join_runs, sample_axis, samples_first
from agent.update.selftest import run_selftest
from compilers import CalibrationError, CompileOptions, compile_model
from compilers.mixed import allowance
from tests.compilers.compiler_fixtures import require_tflite

RNG = np.random.default_rng(5)
STEPS, FEATURES, HIDDEN, CLASSES = 6, 4, 8, 3


def gru_model() -> onnx.ModelProto:
    """feats [N, 6, 4] → bidirectional GRU → ``state`` (its Y_h, [2, N, 8]) and ``logits``
    ([N, 3], a MatMul over both directions' last state), as torch.onnx writes a batch_first GRU."""
    w = RNG.normal(scale=0.4, size=(2, 3 * HIDDEN, FEATURES)).astype(np.float32)
    r = RNG.normal(scale=0.4, size=(2, 3 * HIDDEN, HIDDEN)).astype(np.float32)
    b = RNG.normal(scale=0.1, size=(2, 6 * HIDDEN)).astype(np.float32)
    head = RNG.normal(size=(2 * HIDDEN, CLASSES)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["feats"], ["seq"], name="to_time_major", perm=[1, 0, 2]),
        helper.make_node(
            "GRU",
            ["seq", "W", "R", "B"],
            ["", "state"],
            name="gru",
            hidden_size=HIDDEN,
            direction="bidirectional",
        ),
        helper.make_node("Transpose", ["state"], ["by_sample"], name="to_batch_major", perm=[1, 0, 2]),
        helper.make_node("Reshape", ["by_sample", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "head"], ["logits"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "gru",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["N", STEPS, FEATURES])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "N", HIDDEN]),
        ],
        [
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(r, "R"),
            numpy_helper.from_array(b, "B"),
            numpy_helper.from_array(head, "head"),
            numpy_helper.from_array(np.array([-1, 2 * HIDDEN], np.int64), "flat_shape"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def write(tmp_path: Path, n: int) -> tuple[Path, Path]:
    onnx.save(gru_model(), tmp_path / "gru.onnx")
    np.savez(tmp_path / "val.npz", feats=RNG.normal(size=(n, STEPS, FEATURES)).astype(np.float32))
    return tmp_path / "gru.onnx", tmp_path / "val.npz"


def test_the_sample_axis_is_the_one_of_the_runs_length() -> None:
    assert sample_axis((32, 10), 32) == 0
    assert sample_axis((2, 32, 8), 32) == 1  # an RNN's state
    assert sample_axis((1, 1, 128), 1) == 0  # Silero's state at batch 1: axis 0 as before
    assert sample_axis((2, 1, 8), 1) == 1
    assert sample_axis((5,), 32) == 0  # does not grow with the batch: as before
    assert sample_axis((), 4) == 0


def test_runs_join_along_their_sample_axis_and_come_back_samples_first() -> None:
    full = np.arange(2 * 40 * 3, dtype=np.float32).reshape(2, 40, 3)
    runs, rows = [full[:, :32], full[:, 32:]], [32, 8]
    joined, axis = join_runs(runs, rows)
    assert axis == 1 and np.array_equal(joined, full)
    assert np.array_equal(samples_first(runs, rows), np.moveaxis(full, 1, 0))
    # the axis comes from the widest run: a last run of 2 samples looks like the 2 directions
    two = [full[:, :38], full[:, 38:]]
    assert np.array_equal(join_runs(two, [38, 2])[0], full)
    # a padded run's real samples, along that axis
    assert np.array_equal(first_rows(full[:, :4], 4, 3), full[:, :3])
    assert np.array_equal(first_rows(full[0], 40, 5), full[0, :5])


def test_an_rnn_state_output_validates_and_self_tests_per_sample(tmp_path: Path) -> None:
    # 40 samples run as 32 + 8: the state's runs are [2, 32, 8] and [2, 8, 8]
    model, val = write(tmp_path, 40)
    opts = CompileOptions(precision="fp32", validation=val, latency_runs=0, samples=4)
    report = compile_model(model, "x86-64-avx2", tmp_path / "b", opts)
    assert {s.output for s in report.metrics} == {"logits", "state"}
    assert all(s.passed for s in report.metrics)
    with np.load(tmp_path / "b" / "selftest.npz") as npz:
        assert npz["output:state"].shape == (4, 2, HIDDEN)  # samples first
        assert npz["input:feats"].shape == (4, STEPS, FEATURES)
    manifest = verify_bundle_dir(tmp_path / "b")
    adapter = load_bundle(tmp_path / "b", manifest)
    try:
        assert "passed on 4 samples" in run_selftest(adapter, tmp_path / "b", manifest)
        # and the device still serves the state in the model's own layout
        got = adapter.infer({"feats": RNG.normal(size=(3, STEPS, FEATURES)).astype(np.float32)})
        assert got["state"].shape == (2, 3, HIDDEN)
    finally:
        adapter.close()


def test_a_selftest_of_another_model_fails_on_the_state(tmp_path: Path) -> None:
    model, val = write(tmp_path, 12)
    opts = CompileOptions(precision="fp32", validation=val, latency_runs=0, samples=4)
    compile_model(model, "x86-64-avx2", tmp_path / "b", opts)
    manifest = verify_bundle_dir(tmp_path / "b")
    with np.load(tmp_path / "b" / "selftest.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["output:state"] = arrays["output:state"] + 0.5
    np.savez(tmp_path / "b" / "selftest.npz", **arrays)
    adapter = load_bundle(tmp_path / "b", manifest)
    try:
        with pytest.raises(Exception, match="output 'state'"):
            run_selftest(adapter, tmp_path / "b", manifest)
    finally:
        adapter.close()


def test_mixed_precision_keeps_at_least_one_layer_in_int8() -> None:
    assert allowance(ranked=1, max_share=0.34, quantizable=1) == 0  # the only layer stays INT8
    assert allowance(ranked=2, max_share=0.34, quantizable=2) == 1


def test_a_gru_converts_for_tflite_without_flex_ops(tmp_path: Path) -> None:
    require_tflite()
    model, val = write(tmp_path, 16)
    opts = CompileOptions(precision="fp32", validation=val, latency_runs=0, samples=2)
    report = compile_model(model, "raspberry-pi-5", tmp_path / "b", opts)
    assert report.checked_with is None  # LiteRT itself ran it: no Select TensorFlow ops
    assert all(s.passed for s in report.metrics), report.metrics
    manifest = Manifest.from_json((tmp_path / "b" / "manifest.json").read_text())
    assert "-eru" in str(manifest.build["onnx2tf_switches"])


def streaming_gru() -> onnx.ModelProto:
    """A streaming recogniser as PyTorch exports one: feats [N, 6, 4] scaled by the scalar input
    ``gain``, and the state carried in from the last window, ``h0`` [2, N, 8] (its batch on axis
    1); outputs ``logits`` [N, 3] and the state to carry on, ``state`` [2, N, 8]."""
    model = gru_model()
    g = model.graph
    g.input.extend(
        [
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, [2, "N", HIDDEN]),
            helper.make_tensor_value_info("gain", TensorProto.FLOAT, []),
        ]
    )
    scale = helper.make_node("Mul", ["feats", "gain"], ["scaled"], name="gain")
    for node in g.node:
        if node.name == "to_time_major":
            node.input[0] = "scaled"
        if node.name == "gru":
            node.input.extend(["", "h0"])  # no sequence_lens; initial_h
    g.node.insert(0, scale)
    return model


def stream_samples(n: int) -> dict[str, np.ndarray]:
    return {
        "feats": RNG.normal(size=(n, STEPS, FEATURES)).astype(np.float32),
        "h0": RNG.normal(scale=0.5, size=(n, 2, 1, HIDDEN)).astype(np.float32),  # one whole h0 per run
        "gain": np.array(0.8, np.float32),  # one value for every run
    }


def test_a_state_input_with_its_batch_on_axis_1_compiles_from_whole_tensors_per_run(tmp_path: Path) -> None:
    onnx.save(streaming_gru(), tmp_path / "s.onnx")
    np.savez(tmp_path / "cal.npz", **stream_samples(24))
    np.savez(tmp_path / "val.npz", **stream_samples(20))
    opts = CompileOptions(
        precision="int8",
        calibration=tmp_path / "cal.npz",
        validation=tmp_path / "val.npz",
        latency_runs=0,
        samples=3,
    )
    report = compile_model(tmp_path / "s.onnx", "x86-64-avx2", tmp_path / "b", opts)
    assert report.validation_samples == 20
    assert {m.output for m in report.metrics} == {"logits", "state"} and all(m.passed for m in report.metrics)
    manifest = verify_bundle_dir(tmp_path / "b")
    assert [list(t.shape) for t in manifest.inputs] == [[-1, STEPS, FEATURES], [2, -1, HIDDEN], []]
    with np.load(tmp_path / "b" / "selftest.npz") as npz:
        assert npz["input:h0"].shape == (3, 2, 1, HIDDEN) and npz["input:gain"].shape == (3,)
    # the device's self-test runs them one run at a time, and the bundle serves a batch of 2
    adapter = load_bundle(tmp_path / "b", manifest)
    try:
        assert "passed on 3 samples" in run_selftest(adapter, tmp_path / "b", manifest)
        feed = {
            "feats": RNG.normal(size=(2, STEPS, FEATURES)).astype(np.float32),
            "h0": np.zeros((2, 2, HIDDEN), np.float32),
            "gain": np.array(1.0, np.float32),
        }
        assert adapter.infer(feed)["state"].shape == (2, 2, HIDDEN)
    finally:
        adapter.close()


def test_whole_tensors_per_run_must_fit_the_input(tmp_path: Path) -> None:
    onnx.save(streaming_gru(), tmp_path / "s.onnx")
    bad = {**stream_samples(8), "h0": np.zeros((8, 3, 1, HIDDEN), np.float32)}  # 3 directions
    np.savez(tmp_path / "val.npz", **bad)
    opts = CompileOptions(precision="fp32", validation=tmp_path / "val.npz", latency_runs=0)
    with pytest.raises(CalibrationError, match=r"input 'h0' is \[2, \?, 8\]; got \[8, 3, 1, 8\]"):
        compile_model(tmp_path / "s.onnx", "x86-64-avx2", tmp_path / "b", opts)
    assert not (tmp_path / "b").exists()
