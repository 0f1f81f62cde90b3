"""Where edgectl finds the fleet server and its token.

Each setting comes from the first of: the ``--server``/``--token`` flags, the environment
(``EDGEFLEET_SERVER``, ``EDGEFLEET_TOKEN``), the config file, the default. The config file is
``$EDGEFLEET_CONFIG`` when set (then it must exist), else ``$XDG_CONFIG_HOME/edgefleet/edgectl.yaml``
(``~/.config/edgefleet/edgectl.yaml``) when present::

    server: https://fleet.example.com
    token: s3cr3t
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator
from pydantic_settings import SettingsConfigDict

from agent.layered_settings import (
    COMMAND_LINE,
    ENVIRONMENT,
    LayeredSettings,
    Problem,
    SettingsError,
    load_with_origins,
)
from edgectl.errors import ConfigError

DEFAULT_SERVER = "http://127.0.0.1:8080"
ENV_PREFIX = "EDGEFLEET_"  # EDGEFLEET_SERVER, EDGEFLEET_TOKEN
ENV_CONFIG = "EDGEFLEET_CONFIG"


def _server_url(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the string type reports it
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not a server URL (expected e.g. {DEFAULT_SERVER})")
    return value.rstrip("/")


class Config(LayeredSettings):
    """The resolved settings; ``server_from`` says where the server URL came from (for messages)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    server: Annotated[str, BeforeValidator(_server_url)] = DEFAULT_SERVER
    token: str | None = None

    _server_from: str = "default"  # not a setting: where load_config found the server URL

    @property
    def server_from(self) -> str:
        return self._server_from


def config_path(env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read and whether the user named it explicitly (then it must exist)."""
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser(), True
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "edgefleet" / "edgectl.yaml", False


def load_config(
    server: str | None = None, token: str | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Resolve the settings from flags, then ``env`` (default ``os.environ``), then the file.
    Raises :class:`ConfigError` naming the flag, variable or file (and key) that is wrong."""
    env = os.environ if env is None else env
    path, required = config_path(env)
    if required and not path.is_file():
        raise ConfigError(f"{path}: config file does not exist (named by ${ENV_CONFIG})")
    flags = {"server": server or None, "token": token or None}
    try:
        config, origins = load_with_origins(Config, flags, env, path if path.is_file() else None)
    except SettingsError as exc:
        raise ConfigError("; ".join(map(_message, exc.problems))) from None
    config._server_from = _origin("server", origins.get("server", "default"))
    return config


def _origin(key: str, source: str) -> str:
    if source == COMMAND_LINE:
        return f"--{key}"
    return f"${Config.env_name(key)}" if source == ENVIRONMENT else source


def _message(p: Problem) -> str:
    if p.kind == "unreadable":
        return f"{p.source}: cannot read: {p.why}"
    if p.kind == "yaml":
        return f"{p.source}: not valid YAML: {p.why}"
    if p.kind == "not_mapping":
        return f"{p.source}: expected a mapping of settings, got {p.why}"
    if p.kind == "unknown":
        return f"{p.source}: {p.key}: unknown key (known: {', '.join(Config.model_fields)})"
    if p.source in (COMMAND_LINE, ENVIRONMENT):
        return f"{_origin(p.key, p.source)}: {p.why}"
    return f"{p.source}: {p.key}: {p.why}"
