"""Calibration and validation samples: file forms, matching to inputs, shape/dtype checks,
the image-folder path, and the held-out split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from agent.contracts.manifest import TensorSpec
from compilers.calibration import SampleSet, check_samples, load_samples, random_samples, split_holdout
from compilers.errors import CalibrationError
from compilers.image_folder import load_image_folder
from tests.compilers.compiler_fixtures import EXAMPLE

IMAGE = (TensorSpec("image", "float32", (-1, 3, 8, 8)),)
TWO = (TensorSpec("a", "float32", (-1, 4)), TensorSpec("b", "int64", (-1, 2)))


def _x(n: int = 5) -> np.ndarray:
    return np.zeros((n, 3, 8, 8), np.float32)


def test_npz_keyed_by_input_name(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez(path, a=np.ones((6, 4), np.float32), b=np.ones((6, 2), np.int64), y=np.arange(6))
    s = load_samples(path, TWO)
    assert sorted(s.inputs) == ["a", "b"] and len(s) == 6
    assert s.labels is not None and list(s.labels) == list(range(6))


@pytest.mark.parametrize("key", ["whatever", "x"])
def test_one_input_model_takes_a_single_array_or_x(tmp_path: Path, key: str) -> None:
    path = tmp_path / "c.npz"
    arrays: dict[str, Any] = {key: _x(), "y": np.zeros(5, np.int64)}
    np.savez(path, **arrays)
    assert load_samples(path, IMAGE).inputs["image"].shape == (5, 3, 8, 8)


def test_npy_file(tmp_path: Path) -> None:
    path = tmp_path / "c.npy"
    np.save(path, _x(3))
    assert len(load_samples(path, IMAGE)) == 3


def test_wrong_shape_names_input_expected_and_got(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez(path, image=np.zeros((5, 8, 8, 3), np.float32))
    with pytest.raises(CalibrationError) as err:
        load_samples(path, IMAGE)
    assert "input 'image' expects shape [N, 3, 8, 8], got [5, 8, 8, 3]" in str(err.value)


def test_wrong_rank(tmp_path: Path) -> None:
    path = tmp_path / "c.npy"
    np.save(path, np.zeros((5, 64), np.float32))
    with pytest.raises(CalibrationError, match=r"expects shape \[N, 3, 8, 8\], got \[5, 64\]"):
        load_samples(path, IMAGE)


def test_wrong_dtype_names_both(tmp_path: Path) -> None:
    path = tmp_path / "c.npy"
    np.save(path, np.zeros((5, 3, 8, 8), np.float64))
    with pytest.raises(CalibrationError, match="input 'image' expects dtype float32, got float64"):
        load_samples(path, IMAGE)


def test_missing_input_lists_arrays(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez(path, a=np.ones((6, 4), np.float32))
    with pytest.raises(CalibrationError, match="no array for input 'b'"):
        load_samples(path, TWO)


def test_unequal_sample_counts() -> None:
    with pytest.raises(CalibrationError, match=r"different numbers of samples \('a' 3, 'b' 4\); every input"):
        check_samples({"a": np.ones((3, 4), np.float32), "b": np.ones((4, 2), np.int64)}, TWO, "cal")


def test_a_state_input_with_its_batch_on_axis_1_is_named() -> None:
    # a streaming LSTM's h0 [layers, N, hidden]: its arrays count layers on the first axis
    specs = (
        TensorSpec(name="x", dtype="float32", shape=[-1, 10, 20]),
        TensorSpec(name="h", dtype="float32", shape=[2, -1, 32]),
    )
    samples = {"x": np.ones((8, 10, 20), np.float32), "h": np.ones((2, 8, 32), np.float32)}
    with pytest.raises(CalibrationError, match=r"input 'h' \[2, \?, 32\] has its batch on a later axis"):
        check_samples(samples, specs, "cal")


@pytest.mark.parametrize(("name", "data"), [("c.txt", b"1,2,3"), ("c.npz", b"not a zip")])
def test_unreadable_or_unknown_format(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CalibrationError):
        load_samples(path, IMAGE)


def test_missing_path() -> None:
    with pytest.raises(CalibrationError, match="no such file or folder"):
        load_samples(Path("/nonexistent/cal.npz"), IMAGE)


def test_example_image_folder_reproduces_heldout_rows() -> None:
    folder = EXAMPLE / "images"
    if not (folder / "preprocess.yaml").is_file():
        pytest.skip("examples/digits/images is not there")
    x = load_image_folder(folder)
    held = np.load(EXAMPLE / "heldout.npz")["x"]
    assert x.dtype == np.float32 and x.shape[1:] == (1, 8, 8)
    # Files are <row>_<label>.png in natural order 0, 1, 2, ...: row i is held-out row i.
    np.testing.assert_allclose(x, held[: len(x)], atol=1 / 500)


def _write_folder(folder: Path, config: str, count: int = 3, size: tuple[int, int] = (12, 10)) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")
    (folder / "preprocess.yaml").write_text(config)


def test_rgb_folder_is_resized_normalised_and_laid_out(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    _write_folder(
        folder, "layout: NHWC\ncolor: rgb\nsize: [8, 8]\nmean: [0.5, 0.5, 0.5]\nstd: [0.5, 0.5, 0.5]\n"
    )
    x = load_image_folder(folder)
    assert x.shape == (3, 8, 8, 3) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_folder_feeds_a_one_input_model(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    _write_folder(folder, "layout: NCHW\ncolor: rgb\nsize: [8, 8]\n")
    assert load_samples(folder, IMAGE).inputs["image"].shape == (3, 3, 8, 8)


def test_folder_of_wrong_size_fails_on_shape(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    _write_folder(folder, "layout: NCHW\ncolor: grey\nsize: [8, 8]\n")
    with pytest.raises(CalibrationError, match=r"expects shape \[N, 3, 8, 8\], got \[3, 1, 8, 8\]"):
        load_samples(folder, IMAGE)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("layout: NCHW\ncolor: rgb\nsize: [8, 8]\nmeans: [0]\n", "means: unknown key"),
        ("layout: CHW\ncolor: rgb\nsize: [8, 8]\n", "layout: 'CHW' is not NCHW or NHWC"),
        ("layout: NCHW\nsize: [8, 8]\n", "color: missing"),
        ("layout: NCHW\ncolor: rgb\nsize: 8\n", "size: expected [height, width]"),
        ("layout: NCHW\ncolor: rgb\nsize: [8, 8]\nstd: [1, 2]\n", "std: expected 1 or 3 values"),
        ("layout: NCHW\ncolor: rgb\nsize: [8, 8]\nstd: 0\n", "std: must not be zero"),
    ],
)
def test_bad_preprocess_config_names_file_and_key(tmp_path: Path, config: str, message: str) -> None:
    folder = tmp_path / "imgs"
    _write_folder(folder, config, count=1)
    with pytest.raises(CalibrationError) as err:
        load_image_folder(folder)
    assert str(folder / "preprocess.yaml") in str(err.value) and message in str(err.value)


def test_folder_without_config_or_images(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"needs a preprocess\.yaml"):
        load_image_folder(tmp_path)
    (tmp_path / "preprocess.yaml").write_text("layout: NCHW\ncolor: rgb\nsize: [8, 8]\n")
    with pytest.raises(CalibrationError, match="no images"):
        load_image_folder(tmp_path)


def test_split_holds_out_the_last_fifth() -> None:
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    spec = (TensorSpec("x", "float32", (-1, 1)),)
    full = check_samples({"x": x}, spec, "t")

    cal, held = split_holdout(SampleSet(full, labels=np.arange(10)))
    assert cal.inputs["x"].ravel().tolist() == list(range(8))
    assert held.inputs["x"].ravel().tolist() == [8, 9]
    assert held.labels is not None and held.labels.tolist() == [8, 9]


def test_random_samples_follow_specs() -> None:
    s = random_samples((TensorSpec("x", "float32", (-1, 3, -1)), TensorSpec("ids", "int64", (-1, 5))), 4)
    assert s.inputs["x"].shape == (4, 3, 1) and s.inputs["x"].dtype == np.float32
    assert s.inputs["ids"].dtype == np.int64 and s.origin == "random"
