"""The corpus tier's shared state: the outcome of each model x target compile, collected over the
session, and printed at the end with the compile time of each pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.corpus.catalog import CorpusModel, get
from tests.corpus.data import write_data
from tests.corpus.fetch import model_path
from tests.corpus.outcomes import OUTCOMES


class CorpusFiles:
    """Per model name: (source .onnx, calibration.npz, validation.npz), made on first use."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.made: dict[str, tuple[Path, Path, Path]] = {}

    def __call__(self, name: str) -> tuple[Path, Path, Path]:
        if name not in self.made:
            model: CorpusModel = get(name)
            cal, val = write_data(model.name, self.factory.mktemp(f"data-{model.name}"))
            self.made[name] = (model_path(model.name), cal, val)
        return self.made[name]


@pytest.fixture(scope="session")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> CorpusFiles:
    return CorpusFiles(tmp_path_factory)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    terminalreporter.section("model corpus: compile outcomes")
    total = 0.0
    for (model, target), o in sorted(OUTCOMES.items()):
        total += o.seconds
        terminalreporter.write_line(f"{model:16} {target:16} {o.status:12} {o.seconds:7.1f}s  {o.detail}")
    terminalreporter.write_line(f"{len(OUTCOMES)} pairs, {total:.0f} s of compiling")
