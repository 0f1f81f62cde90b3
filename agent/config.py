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
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import NoDecode, SettingsConfigDict

from agent.contracts.topics import check_device_id
from agent.errors import ConfigError
from agent.layered_settings import (
    ENVIRONMENT,
    HttpUrl,
    Integer,
    LayeredSettings,
    Problem,
    SettingsError,
    TcpPort,
    load,
)

ENV_PREFIX = "EDGEFLEET_AGENT_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_labels(items: list[str] | str, where: str) -> dict[str, str]:
    """``["k=v", ...]`` or ``"k=v,k2=v2"`` → a dict. Raises ConfigError naming ``where``."""
    try:
        return _labels(items)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _labels(value: Any) -> Any:
    """Labels as a mapping, ``k=v`` strings or one ``k=v,k2=v2`` string → ``{k: v}``."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, str):
        value = [p for p in value.split(",") if p.strip()]
    if not isinstance(value, list):
        raise ValueError(f"expected a mapping, got {value!r}")
    out = {}
    for item in map(str, value):
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"label {item!r} is not key=value")
        out[key.strip()] = val.strip()
    return out


def _grpc_port(value: int) -> int:
    if not -1 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port (0 picks a free one, -1 turns gRPC off)")
    return value


def _not_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise ValueError(f"{value.upper()!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.upper()


def _at_least_1(value: int) -> int:
    if value < 1:
        raise ValueError("must be at least 1")
    return value


# check_device_id raises ContractError, a ValueError: pydantic reports it with its words.
DeviceId = Annotated[str, AfterValidator(check_device_id)]
Labels = Annotated[dict[str, str], NoDecode, BeforeValidator(_labels)]  # NoDecode: "k=v,..." is no JSON


class AgentConfig(LayeredSettings):
    """The agent's settings. A setting is one field here: its flag (``cli.py`` makes one per
    field, with the description as its help), variable and file key follow from the name."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, coerce_numbers_to_str=True)

    server: HttpUrl = Field(description="fleet server base URL, e.g. http://fleet:8080")
    device_id: DeviceId = Field(description="this device's id (letters, digits, . _ : -)")
    profile: str = Field(description="device profile name (e.g. x86-64-avx2) or path to a profile YAML")
    data_dir: Annotated[Path, AfterValidator(Path.expanduser)] = Field(
        description="where the journal, slots and downloads live"
    )
    host: str = Field("127.0.0.1", description="inference API bind address (default 127.0.0.1)")
    port: TcpPort = Field(0, description="inference API port (default 0: pick a free port)")
    labels: Labels = Field({}, description="a device label (repeatable)")
    threads: Annotated[Integer, AfterValidator(_at_least_1)] | None = Field(
        None,
        description="runtime threads per model (default: one per CPU, or one for a model that runs "
        "faster on one, timed at load)",
    )
    log_level: Annotated[str, AfterValidator(_log_level)] = Field(
        "INFO", description="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    advertise_url: HttpUrl | None = Field(None, description="inference URL to register, if not the bound one")
    grpc_port: Annotated[Integer, AfterValidator(_grpc_port)] = Field(
        0, description="gRPC inference port (default 0: pick a free port; -1: no gRPC)"
    )
    spinning: bool | None = Field(
        None, description="let the runtime's threads spin between runs (default: the profile's, else off)"
    )
    max_batch: Annotated[Integer, AfterValidator(_at_least_1)] | None = Field(
        None, description="largest dynamic batch in rows (default: the desired state's, else 8; 1: off)"
    )
    max_queue_delay_ms: Annotated[float, AfterValidator(_not_negative)] | None = Field(
        None, description="longest wait for a fuller batch, when batching pays (default 2)"
    )
    queue_limit: Annotated[Integer, AfterValidator(_at_least_1)] = Field(
        64, description="requests waiting per model before new ones are refused with 503 (default 64)"
    )
    latency_budget_ms: Annotated[float, AfterValidator(_not_negative)] | None = Field(
        None, description="latency budget per request (default: the desired state's, else the profile's)"
    )
    tuf_root: Annotated[Path, AfterValidator(Path.expanduser)] | None = Field(
        None, description="TUF root metadata to trust, copied to <data-dir>/trust/root.json if none is there"
    )
    offload_url: HttpUrl | None = Field(
        None, description="cloud OIP v2 endpoint for overflow (default: the desired state's offload policy)"
    )
    # device identity (agent.identity): the token is used once, while the device has no certificate
    enroll_token: str | None = Field(
        None, description="enrollment token (edgectl devices enroll-token create); needed until enrolled"
    )
    renew_check_s: Annotated[float, AfterValidator(_not_negative)] = Field(
        600.0, description="how often to check whether the certificate is due for renewal (default 600)"
    )
    standalone: bool = Field(
        False,
        description="serve the installed models only: no enrollment, no MQTT, no updates (a device "
        "cut off from its fleet on purpose, a benchmark)",
    )
    telemetry_interval: Annotated[float, AfterValidator(_not_negative)] = Field(
        5.0, description="seconds between telemetry messages (default 5; 0: no telemetry)"
    )
    telemetry_buffer_messages: Annotated[Integer, AfterValidator(_at_least_1)] = Field(
        720, description="telemetry messages kept on disk while offline, oldest dropped first (default 720)"
    )
    telemetry_buffer_bytes: Annotated[Integer, AfterValidator(_at_least_1)] = Field(
        1024 * 1024, description="bytes of telemetry kept on disk while offline (default 1 MiB)"
    )


def load_config(
    cli: Mapping[str, Any], env: Mapping[str, str], config_file: Path | None = None
) -> AgentConfig:
    """The settings from ``cli`` (only flags that were given; ``None`` = not given), then ``env``,
    then ``config_file`` (default ``$EDGEFLEET_AGENT_CONFIG``), then the defaults; labels merge key
    by key. Raises :class:`ConfigError` naming the setting and where its value came from."""
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    try:
        return load(AgentConfig, cli, env, config_file)
    except SettingsError as exc:
        raise ConfigError(_message(exc.problems)) from None


def _message(problems: tuple[Problem, ...]) -> str:
    missing = [p.key for p in problems if p.kind == "missing"]
    if missing:
        flags = (f"--{k.replace('_', '-')} (or {AgentConfig.env_name(k)})" for k in missing)
        return "missing setting: " + ", ".join(flags)
    return "; ".join(map(_one, problems))


def _one(p: Problem) -> str:
    if p.kind == "unreadable":
        return f"{p.source}: cannot read the config file: {p.why}"
    if p.kind == "yaml":
        return f"{p.source}: not valid YAML: {p.why}"
    if p.kind == "not_mapping":
        return f"{p.source}: a config file must be a mapping of settings"
    if p.kind == "unknown":
        return f"{p.source}: {p.key}: unknown setting (known: {', '.join(AgentConfig.model_fields)})"
    if p.source == ENVIRONMENT:
        return f"{AgentConfig.env_name(p.key)}: {p.why}"
    return f"{p.key.replace('_', '-')} ({p.source}): {p.why}"


def setup_logging(level: str) -> None:
    """Logs go to stderr; stdout carries only the one ``ready`` JSON line."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The HTTP client's wire-level chatter drowns the agent's own DEBUG lines.
    for noisy in ("httpcore", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, getattr(logging, level)))
