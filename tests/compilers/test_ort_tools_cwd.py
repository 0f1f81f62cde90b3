"""Quantization pre-processing leaves nothing in the current directory. ONNX Runtime's symbolic
shape pass, on a model whose shapes it can't all infer (the public YOLOv8 export of the corpus is
one), saves its partial model and a copy of the weights into the current directory before it
raises; a compile must ask first and skip that pass instead."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from compilers.ort_tools import _symbolic_shapes_complete, pre_process
from tests.corpus.fetch import model_path


def test_pre_processing_a_model_the_symbolic_pass_cant_finish_writes_nothing_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = model_path("nudenet-320n")  # from the corpus cache (downloaded once)
    assert not _symbolic_shapes_complete(source)
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    dst = tmp_path / "pre.onnx"
    pre_process(source, dst)
    assert list(here.iterdir()) == []
    onnx.checker.check_model(str(dst))
