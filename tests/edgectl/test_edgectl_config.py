"""Where the server URL and token come from: flags, then environment, then the config file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from edgectl.config import DEFAULT_SERVER, load_config
from edgectl.errors import ConfigError

Run = Callable[..., Result]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_default_when_nothing_is_set(tmp_path: Path) -> None:
    cfg = load_config(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert (cfg.server, cfg.token, cfg.server_from) == (DEFAULT_SERVER, None, "default")


def test_precedence_flag_env_file(tmp_path: Path) -> None:
    write(tmp_path / "edgefleet" / "edgectl.yaml", "server: http://file:1\ntoken: from-file\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert load_config(env=env).server == "http://file:1"
    assert load_config(env=env).token == "from-file"
    env |= {"EDGEFLEET_SERVER": "http://env:2/", "EDGEFLEET_TOKEN": "from-env"}
    cfg = load_config(env=env)
    assert (cfg.server, cfg.token, cfg.server_from) == ("http://env:2", "from-env", "$EDGEFLEET_SERVER")
    cfg = load_config("https://flag:3", "from-flag", env=env)
    assert (cfg.server, cfg.token, cfg.server_from) == ("https://flag:3", "from-flag", "--server")


def test_edgefleet_config_names_the_file_and_it_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere.yaml", "server: http://named:4\n")
    assert load_config(env={"EDGEFLEET_CONFIG": str(path)}).server == "http://named:4"
    with pytest.raises(ConfigError, match="config file does not exist"):
        load_config(env={"EDGEFLEET_CONFIG": str(tmp_path / "missing.yaml")})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sever: http://typo\n", "sever: unknown key (known: server, token)"),
        ("server: 8080\n", "server: expected a string, got 8080"),
        ("- a list\n", "expected a mapping of settings"),
        ("server: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(env={"EDGEFLEET_CONFIG": str(path)})
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_server_must_be_an_http_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--server: 'fleet:8080' is not a server URL"):
        load_config("fleet:8080", env={})


def test_the_cli_reads_the_config_file(edgectl: Run, server_url: str, fleet, tmp_path: Path) -> None:
    path = write(tmp_path / "edgectl.yaml", f"server: {server_url}\ntoken: t0k\n")
    fleet.token = "t0k"
    result = edgectl("devices", "ls", "-o", "json", env={"EDGEFLEET_CONFIG": str(path)})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "[]"


def test_the_cli_reads_the_environment(edgectl: Run, server_url: str, fleet) -> None:
    result = edgectl("groups", "ls", env={"EDGEFLEET_SERVER": server_url})
    assert result.exit_code == 0, result.output


def test_a_bad_config_is_one_error_line_even_for_a_server_command(edgectl: Run, tmp_path: Path) -> None:
    path = write(tmp_path / "edgectl.yaml", "sever: x\n")
    result = edgectl("devices", "ls", env={"EDGEFLEET_CONFIG": str(path)})
    assert result.exit_code == 1
    assert result.stderr == f"error: {path}: sever: unknown key (known: server, token)\n"


def test_local_commands_never_read_the_config(edgectl: Run, tmp_path: Path) -> None:
    path = write(tmp_path / "edgectl.yaml", "sever: x\n")
    assert edgectl("profiles", "ls", env={"EDGEFLEET_CONFIG": str(path)}).exit_code == 0
