"""Layered settings: the one way the agent, the server and edgectl read theirs.

A program's settings are one pydantic-settings class (a :class:`LayeredSettings`): each field is
a setting (name, type, default, and validators for what the type can't say), so adding a
setting is adding a field. :func:`load` fills it from, highest first:

1. the values given (command-line flags; ``None`` means "not given"),
2. the environment, ``<env_prefix><NAME>`` (pydantic-settings' env source; empty values are
   ignored),
3. a YAML file, when there is one (read here rather than by pydantic-settings' YAML source, so
   that an unreadable file, bad YAML or a list instead of a mapping is reported as such),
4. the field defaults.

Mapping settings (labels) merge key by key across the layers instead of replacing each other.
Whatever is wrong is collected as :class:`Problem` records (which setting, which layer, what is
wrong) in one :class:`SettingsError`, so each program words the message its own way.

Building a settings class directly (``AgentConfig(server=...)``) uses only its keyword arguments,
never the environment or a file: tests and embedders get exactly what they pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as EnvDecodeError

COMMAND_LINE = "command line"
ENVIRONMENT = "environment"
DEFAULT = "default"

S = TypeVar("S", bound="LayeredSettings")


class LayeredSettings(BaseSettings):
    """Base of every settings class: frozen, unknown keys refused, no source but the arguments
    unless :func:`load` builds it."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # load() reads the other layers itself, to know where each value came from

    @classmethod
    def env_name(cls, key: str) -> str:
        """The environment variable that sets ``key`` (``EDGEFLEET_AGENT_DEVICE_ID``)."""
        return f"{cls.model_config.get('env_prefix', '')}{key.upper()}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings.

    ``kind`` is ``missing`` (a required setting no layer gave), ``unknown`` (a key that is no
    setting), ``invalid`` (a value of the wrong type or outside its rule), or, for the file as a
    whole (``key`` empty), ``unreadable``, ``yaml`` or ``not_mapping``. ``source`` is
    :data:`COMMAND_LINE`, :data:`ENVIRONMENT`, the file's path or :data:`DEFAULT`; ``why`` says
    what is wrong in words (``expected an integer, got 'x'``).
    """

    kind: str
    key: str
    source: str
    why: str
    value: Any = None


class SettingsError(Exception):
    """The settings can't be used; ``problems`` lists every reason found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(f"{p.key or p.source}: {p.why}" for p in problems))
        self.problems = tuple(problems)


def load(cls: type[S], given: Mapping[str, Any], env: Mapping[str, str], file: Path | None = None) -> S:
    """``cls`` filled from ``given``, then ``env``, then ``file`` (YAML), then its defaults.

    Raises :class:`SettingsError` listing what is missing, unknown or invalid, each with the
    layer it came from.
    """
    return load_with_origins(cls, given, env, file)[0]


def load_with_origins(
    cls: type[S], given: Mapping[str, Any], env: Mapping[str, str], file: Path | None = None
) -> tuple[S, dict[str, str]]:
    """As :func:`load`, and which layer each setting's value came from (absent: the default)."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if file is not None:
        layers.append((str(file), read_yaml(file)))
    try:
        layers.append((ENVIRONMENT, _MappingEnvSource(cls, env)()))
    except EnvDecodeError as exc:  # a structured setting whose variable is not JSON
        raise SettingsError([Problem("invalid", "", ENVIRONMENT, str(exc))]) from None
    layers.append((COMMAND_LINE, {k: v for k, v in given.items() if v is not None}))

    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    problems: list[Problem] = []
    for where, values in layers:
        for key, value in values.items():
            field = cls.model_fields.get(key)
            if field is None:
                problems.append(Problem("unknown", key, where, "unknown setting", value))
                continue
            if _is_mapping(field.annotation):
                try:  # each layer's mapping is read on its own, then merged over the lower layers'
                    value = {**merged.get(key, {}), **_adapter(field).validate_python(value)}
                except ValidationError as exc:
                    problems += [_problem({**e, "loc": (key, *e["loc"])}, {key: where}) for e in exc.errors()]
                    continue
            merged[key], origin[key] = value, where
    if problems:
        raise SettingsError(problems)
    try:
        return cls(**merged), origin
    except ValidationError as exc:
        raise SettingsError([_problem(e, origin) for e in exc.errors()]) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in YAML file ``path``. Raises :class:`SettingsError` (``unreadable``, ``yaml``,
    ``not_mapping``) naming the file."""
    import yaml  # only when there is a file to read: keeps `edgectl --help` light

    where = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SettingsError([Problem("unreadable", "", where, exc.strerror or str(exc))]) from exc
    except yaml.YAMLError as exc:
        raise SettingsError([Problem("yaml", "", where, " ".join(str(exc).split()))]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError([Problem("not_mapping", "", where, type(data).__name__, data)])
    return {str(k): v for k, v in data.items()}


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``
    (the loaders take the environment as an argument, so tests don't patch the process's)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        # Names are matched as written (upper case), and empty values mean "not set".
        self._given = {k.lower(): v for k, v in env.items() if v and k == k.upper()}
        super().__init__(settings_cls, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._given


def _is_mapping(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", annotation) is dict


def _adapter(field: FieldInfo) -> TypeAdapter[Any]:
    """Validates one layer's value of a mapping field with the field's own validators (which must
    therefore sit in its ``Annotated`` metadata, not in ``@field_validator``)."""
    annotation: Any = field.annotation
    return TypeAdapter(Annotated[annotation, *field.metadata] if field.metadata else annotation)


def _problem(error: Any, origin: Mapping[str, str]) -> Problem:
    key = str(error["loc"][0]) if error["loc"] else ""
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return Problem("missing", key, DEFAULT, "missing setting")
    if kind == "extra_forbidden":
        return Problem("unknown", key, origin.get(key, DEFAULT), "unknown setting", value)
    return Problem("invalid", key, origin.get(key, DEFAULT), _why(error), value)


def _why(error: Any) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "value_error":
        return str(error["ctx"]["error"])  # a validator's own words
    if kind.startswith("int_"):
        return f"expected an integer, got {value!r}"
    if kind.startswith("float_"):
        return f"expected a number, got {value!r}"
    if kind == "string_type":
        return f"expected a string, got {value!r}"
    if kind in ("dict_type", "mapping_type"):
        return f"expected a mapping, got {value!r}"
    return str(error["msg"])


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # YAML's `yes`; pydantic would take it as 1
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _tcp_port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port (0 picks a free one)")
    return value


def _http_url(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the string type reports it
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


# Types for the settings the programs share; their messages are what the user reads.
Integer = Annotated[int, BeforeValidator(_not_bool)]  # a number or its text, never a boolean
TcpPort = Annotated[Integer, AfterValidator(_tcp_port)]
HttpUrl = Annotated[str, BeforeValidator(_http_url)]  # without its trailing slash
