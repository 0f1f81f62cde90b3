"""Fixtures for the compiler tests; the builders live in :mod:`tests.compilers.compiler_fixtures`."""

from __future__ import annotations

import pytest

from tests.compilers.compiler_fixtures import EXAMPLE, ModelFiles, cnn_model, write_model_files


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """The tiny CNN (dynamic batch) with calibration and validation files."""
    return write_model_files(tmp_path_factory.mktemp("tiny"), cnn_model())


@pytest.fixture(scope="session")
def digits() -> ModelFiles:
    """The example digits CNN with its calibration and held-out sets."""
    files = ModelFiles(EXAMPLE / "digits_cnn.onnx", EXAMPLE / "calibration.npz", EXAMPLE / "heldout.npz")
    if not files.model.is_file():
        pytest.skip("examples/digits/digits_cnn.onnx is not there (run examples/digits/train.py)")
    return files
