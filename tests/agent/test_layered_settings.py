"""agent.layered_settings: flags over environment over file over defaults, and what went wrong where."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import SettingsConfigDict

from agent.layered_settings import (
    COMMAND_LINE,
    DEFAULT,
    ENVIRONMENT,
    Integer,
    LayeredSettings,
    SettingsError,
    TcpPort,
    load,
    load_with_origins,
)


class Demo(LayeredSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

    name: str
    port: TcpPort = 0
    workers: Integer = 1
    tags: dict[str, str] = {}


def test_each_layer_overrides_the_ones_below_and_mappings_merge(tmp_path: Path) -> None:
    file = tmp_path / "demo.yaml"
    file.write_text("name: from-file\nport: 1\nworkers: 3\ntags: {a: file, b: file}\n")
    env = {"DEMO_PORT": "2", "DEMO_NAME": "", "DEMO_TAGS": '{"b": "env"}'}
    got, origins = load_with_origins(Demo, {"port": 5, "workers": None}, env, file)
    assert (got.name, got.port, got.workers) == ("from-file", 5, 3)  # "" and None: not given
    assert got.tags == {"a": "file", "b": "env"}
    assert origins == {"name": str(file), "port": COMMAND_LINE, "workers": str(file), "tags": ENVIRONMENT}


def test_environment_names_are_matched_as_written() -> None:
    assert load(Demo, {}, {"DEMO_NAME": "upper", "demo_port": "9"}).port == 0


def test_building_directly_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_PORT", "9")
    assert Demo(name="x").port == 0


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        ({}, {}, ("missing", "name", DEFAULT)),
        ({"name": "x", "nmae": "y"}, {}, ("unknown", "nmae", COMMAND_LINE)),
        ({"name": "x"}, {"DEMO_PORT": "http"}, ("invalid", "port", ENVIRONMENT)),
        ({"name": "x", "port": 70000}, {}, ("invalid", "port", COMMAND_LINE)),
        ({"name": "x", "workers": True}, {}, ("invalid", "workers", COMMAND_LINE)),
    ],
)
def test_problems_name_the_setting_and_its_layer(given: dict, env: dict, expected: tuple) -> None:
    with pytest.raises(SettingsError) as exc:
        load(Demo, given, env)
    (problem,) = exc.value.problems
    assert (problem.kind, problem.key, problem.source) == expected


def test_problem_wording() -> None:
    with pytest.raises(SettingsError) as exc:
        load(Demo, {"name": "x", "port": 70000, "workers": "many"}, {})
    assert [p.why for p in exc.value.problems] == [
        "70000 is not a TCP port (0 picks a free one)",
        "expected an integer, got 'many'",
    ]


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n", "not_mapping"), ("a: [\n", "yaml"), ("name: x\ntags: 5\n", "invalid")]
)
def test_bad_files_are_named(tmp_path: Path, text: str, kind: str) -> None:
    file = tmp_path / "demo.yaml"
    file.write_text(text)
    with pytest.raises(SettingsError) as exc:
        load(Demo, {}, {}, file)
    assert [(p.kind, p.source) for p in exc.value.problems] == [(kind, str(file))]


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as exc:
        load(Demo, {"name": "x"}, {}, tmp_path / "absent.yaml")
    assert [(p.kind, p.source) for p in exc.value.problems] == [("unreadable", str(tmp_path / "absent.yaml"))]
