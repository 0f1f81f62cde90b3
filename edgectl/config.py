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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgectl.errors import ConfigError

DEFAULT_SERVER = "http://127.0.0.1:8080"
ENV_SERVER = "EDGEFLEET_SERVER"
ENV_TOKEN = "EDGEFLEET_TOKEN"
ENV_CONFIG = "EDGEFLEET_CONFIG"
FILE_KEYS = ("server", "token")


@dataclass(frozen=True)
class Config:
    """The resolved settings; ``server_from`` says where the server URL came from (for messages)."""

    server: str
    token: str | None = None
    server_from: str = "default"


def config_path(env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read and whether the user named it explicitly (then it must exist)."""
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser(), True
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "edgefleet" / "edgectl.yaml", False


def read_config_file(path: Path, required: bool) -> dict[str, str]:
    """The file's settings (``{}`` when it is absent and not required). Raises :class:`ConfigError`
    naming the file and the key for anything unreadable, unknown or mistyped."""
    if not path.is_file():
        if required:
            raise ConfigError(f"{path}: config file does not exist (named by ${ENV_CONFIG})")
        return {}
    import yaml  # only when there is a file to read: keeps `edgectl --help` light

    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    out: dict[str, str] = {}
    for key, value in data.items():
        if key not in FILE_KEYS:
            raise ConfigError(f"{path}: {key}: unknown key (known: {', '.join(FILE_KEYS)})")
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key}: expected a string, got {value!r}")
        out[key] = value
    return out


def check_server_url(url: str, origin: str) -> str:
    """``url`` without a trailing slash; raises :class:`ConfigError` unless it is an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{origin}: {url!r} is not a server URL (expected e.g. {DEFAULT_SERVER})")
    return url.rstrip("/")


def load_config(
    server: str | None = None, token: str | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Resolve the settings from flags, then ``env`` (default ``os.environ``), then the file."""
    env = os.environ if env is None else env
    path, required = config_path(env)
    file: dict[str, str] | None = None

    def from_file() -> dict[str, str]:
        nonlocal file
        if file is None:
            file = read_config_file(path, required)
        return file

    if required:
        from_file()  # a file the user named is checked even when flags override it
    if server:
        url, origin = server, "--server"
    elif env.get(ENV_SERVER):
        url, origin = env[ENV_SERVER], f"${ENV_SERVER}"
    elif "server" in from_file():
        url, origin = from_file()["server"], str(path)
    else:
        url, origin = DEFAULT_SERVER, "default"
    tok = token or env.get(ENV_TOKEN) or from_file().get("token") or None
    return Config(server=check_server_url(url, origin), token=tok, server_from=origin)
