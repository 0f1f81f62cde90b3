"""Fixtures for the edgectl tests: a real HTTP fleet server (the stub in ``edgectl_stub_server.py``, served by
uvicorn in a thread on a free 127.0.0.1 port) and a runner that invokes the CLI in-process with a
clean environment (no config file, no EDGEFLEET_* variables from the developer's shell).

Tests run with ``--import-mode=importlib``, so test modules can't import this file or the stub by
name: they get everything through fixtures, and the stub is loaded here by its path.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from edgectl.main import cli
from tests.fixtures.asgi_server import serve_app

Run = Callable[..., Result]


def _load_stub() -> ModuleType:
    path = Path(__file__).with_name("edgectl_stub_server.py")
    spec = importlib.util.spec_from_file_location("edgectl_tests_stub_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_stub_module = _load_stub()
Fleet = _stub_module.Fleet


@pytest.fixture(scope="session")
def _stub() -> Iterator[tuple[str, Any]]:
    fleet = Fleet()
    with serve_app(_stub_module.create_stub_app(fleet), timeout=10, lifespan="off") as url:
        yield url, fleet


@pytest.fixture
def fleet(_stub: tuple[str, Any]) -> Any:
    """The stub's state, emptied for each test."""
    _stub[1].reset()
    return _stub[1]


@pytest.fixture
def server_url(_stub: tuple[str, Any], fleet: Any) -> str:
    return _stub[0]


@pytest.fixture
def free_url() -> str:
    """A URL on which nothing listens (a port just bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in (
        "EDGEFLEET_SERVER",
        "EDGEFLEET_TOKEN",
        "EDGEFLEET_CONFIG",
        "EDGEFLEET_PROFILES_DIR",
        "COLUMNS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))


@pytest.fixture
def edgectl() -> Run:
    """``edgectl(*args, env=None)`` runs the CLI in-process; stdout and stderr stay apart."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)

    return run


@pytest.fixture
def api(edgectl: Run, server_url: str) -> Run:
    """Like ``edgectl`` but pointed at the stub server."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return edgectl("--server", server_url, *args, env=env)

    return run
