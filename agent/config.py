"""The agent's settings, from (highest first) command-line flags, ``EDGEFLEET_AGENT_*``
environment variables, a YAML config file, and defaults.

Every setting has the same name in all three places (``device_id`` / ``--device-id`` /
``EDGEFLEET_AGENT_DEVICE_ID``); labels merge key by key (``--label k=v`` repeated,
``EDGEFLEET_AGENT_LABELS="k=v,k2=v2"``, or a ``labels:`` mapping in the file). Errors name the
setting and where its value came from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from agent.contracts.errors import ContractError
from agent.contracts.topics import check_device_id
from agent.errors import ConfigError

ENV_PREFIX = "EDGEFLEET_AGENT_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REQUIRED = ("server", "device_id", "profile", "data_dir")


@dataclass(frozen=True)
class AgentConfig:
    server: str
    device_id: str
    profile: str
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    log_level: str = "INFO"
    advertise_url: str | None = None  # the inference URL to register, when host/port aren't reachable as is
    grpc_port: int = 0  # the gRPC inference API's port on host: 0 picks a free one, -1 turns it off


KEYS = (
    "server",
    "device_id",
    "profile",
    "data_dir",
    "host",
    "port",
    "labels",
    "threads",
    "log_level",
    "advertise_url",
    "grpc_port",
)


def parse_labels(items: list[str] | str, where: str) -> dict[str, str]:
    """``["k=v", ...]`` or ``"k=v,k2=v2"`` → a dict. Raises ConfigError naming ``where``."""
    if isinstance(items, str):
        items = [p for p in items.split(",") if p.strip()]
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: label {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a YAML file. Unknown keys are errors that name the file and the key."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of settings")
    for key in data:
        if key not in KEYS:
            raise ConfigError(f"{path}: {key}: unknown setting (known: {', '.join(KEYS)})")
    if "labels" in data:
        labels = data["labels"]
        if isinstance(labels, list):
            data["labels"] = parse_labels([str(x) for x in labels], f"{path}: labels")
        elif isinstance(labels, dict):
            data["labels"] = {str(k): str(v) for k, v in labels.items()}
        else:
            raise ConfigError(f"{path}: labels: expected a mapping, got {labels!r}")
    return data


def load_config(
    cli: Mapping[str, Any], env: Mapping[str, str], config_file: Path | None = None
) -> AgentConfig:
    """Merge the sources and validate. ``cli`` holds only flags that were given (``None`` = not
    given); ``config_file`` defaults to ``$EDGEFLEET_AGENT_CONFIG``. Raises :class:`ConfigError`."""
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file is not None:
        layers.append((str(config_file), read_config_file(config_file)))
    env_layer: dict[str, Any] = {}
    for key in KEYS:
        value = env.get(ENV_PREFIX + key.upper())
        if value not in (None, ""):
            env_layer[key] = parse_labels(value, ENV_PREFIX + "LABELS") if key == "labels" else value
    layers.append(("environment", env_layer))
    layers.append(("command line", {k: v for k, v in cli.items() if v is not None and k in KEYS}))

    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    labels: dict[str, str] = {}
    for where, layer in layers:
        for key, value in layer.items():
            if key == "labels":
                labels.update(value)
            else:
                merged[key], source[key] = value, where
    missing = [k for k in REQUIRED if k not in merged]
    if missing:
        flags = ", ".join(f"--{k.replace('_', '-')} (or {ENV_PREFIX}{k.upper()})" for k in missing)
        raise ConfigError(f"missing setting: {flags}")
    return _validate(merged, source, labels)


def _validate(m: dict[str, Any], source: dict[str, str], labels: dict[str, str]) -> AgentConfig:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{key.replace('_', '-')} ({source.get(key, 'default')}): {why}")

    server = str(m["server"]).rstrip("/")
    if urlparse(server).scheme not in ("http", "https") or not urlparse(server).netloc:
        raise bad("server", f"{server!r} is not an http(s) URL")
    try:
        device_id = check_device_id(str(m["device_id"]))
    except ContractError as exc:
        raise bad("device_id", str(exc)) from exc
    port = _int(m.get("port", 0), "port", bad)
    if not 0 <= port <= 65535:
        raise bad("port", f"{port} is not a TCP port (0 picks a free one)")
    grpc_port = _int(m.get("grpc_port", 0), "grpc_port", bad)
    if not -1 <= grpc_port <= 65535:
        raise bad("grpc_port", f"{grpc_port} is not a TCP port (0 picks a free one, -1 turns gRPC off)")
    threads = None if m.get("threads") in (None, "") else _int(m["threads"], "threads", bad)
    if threads is not None and threads < 1:
        raise bad("threads", "must be at least 1")
    level = str(m.get("log_level", "INFO")).upper()
    if level not in LOG_LEVELS:
        raise bad("log_level", f"{level!r} is not one of {', '.join(LOG_LEVELS)}")
    advertise = m.get("advertise_url")
    if advertise is not None and urlparse(str(advertise)).scheme not in ("http", "https"):
        raise bad("advertise_url", f"{advertise!r} is not an http(s) URL")
    return AgentConfig(
        server=server,
        device_id=device_id,
        profile=str(m["profile"]),
        data_dir=Path(m["data_dir"]).expanduser(),
        host=str(m.get("host", "127.0.0.1")),
        port=port,
        labels=labels,
        threads=threads,
        log_level=level,
        advertise_url=None if advertise is None else str(advertise).rstrip("/"),
        grpc_port=grpc_port,
    )


def _int(value: Any, key: str, bad: Any) -> int:
    if isinstance(value, bool):
        raise bad(key, f"expected an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad(key, f"expected an integer, got {value!r}") from None


def setup_logging(level: str) -> None:
    """Logs go to stderr; stdout carries only the one ``ready`` JSON line."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The HTTP client's wire-level chatter drowns the agent's own DEBUG lines.
    for noisy in ("httpcore", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, getattr(logging, level)))
