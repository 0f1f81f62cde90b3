"""Server settings: one frozen settings class (see :mod:`agent.layered_settings`), filled from CLI
flags, then ``EDGEFLEET_*`` variables, then defaults. :func:`load_settings` checks every value and
raises :class:`ConfigError` naming the flag and what is accepted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import PositiveFloat
from pydantic_settings import SettingsConfigDict

from agent.layered_settings import Integer, LayeredSettings, SettingsError, TcpPort, load
from fleet_server.errors import ConfigError

ENV_PREFIX = "EDGEFLEET_"
PROTOCOLS = ("5", "3.1.1")
BROKER_KINDS = ("auto", "embedded", "mosquitto")
MOSQUITTO_BIN = "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class BrokerSpec:
    """Which broker to use: ``kind`` is ``auto``, ``embedded``, ``mosquitto`` or ``external``;
    ``host``/``port`` are set for ``external`` only."""

    kind: str
    host: str | None = None
    port: int | None = None
    tls: bool = False  # external only: mqtts://, the server connects with its fleet-server certificate


@dataclass(frozen=True)
class StoreSpec:
    """Where artifacts go: ``kind`` ``dir`` with ``path``, or ``s3`` with ``bucket``/``prefix``."""

    kind: str
    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""


class Settings(LayeredSettings):
    """Everything the server needs to start. Field names match the CLI flags and the
    ``EDGEFLEET_<NAME>`` variables (``EDGEFLEET_DB`` for ``db``, and so on). Adding a setting is
    adding a field (and its ``serve`` option in ``cli.py``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, coerce_numbers_to_str=True)

    host: str = "127.0.0.1"
    port: TcpPort = 8080  # 0: pick a free port
    grpc_port: Integer | None = None  # cloud inference over gRPC; None: port + 1 (free if port is 0); -1: off
    data_dir: Path = Path(".edgefleet/server")
    db: str | None = None  # default sqlite:///<data_dir>/fleet.db
    store: str = "dir"  # "dir" (<data_dir>/artifacts), a directory path, or s3://bucket/prefix
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    broker: str = "auto"  # auto | embedded | mosquitto | mqtt://host:port
    mqtt_protocol: str = "5"  # "5" or "3.1.1"
    mqtt_client_id: str | None = None  # stable per replica so the broker keeps its session
    mqtt_keepalive: Integer = 30
    session_expiry_s: Integer = 3600
    token: str | None = None  # bootstrap admin token; None: open until an operator token exists
    public_url: str | None = None  # makes desired-state URLs absolute when set
    compile_workers: Integer = 1
    reconcile_interval_s: float = 2.0
    events_heartbeat_s: PositiveFloat = 15.0  # a quiet event stream still sends this often
    telemetry_raw_retention_h: float = 24.0  # raw telemetry windows kept this long
    telemetry_rollup_retention_d: float = 30.0  # one-minute rollups kept this long
    telemetry_rollup_interval_s: float = 60.0  # how often windows are rolled up and pruned; 0: never
    mosquitto_bin: str = MOSQUITTO_BIN
    log_level: str = "info"
    # TUF (fleet_server/trust): the server key directory `edgectl keys init` made (DIR/server).
    keys_dir: Path | None = None
    tuf_timestamp_expiry_s: float = 86400.0  # timestamp metadata validity; re-signed at half
    tuf_refresh_interval_s: float = 60.0  # how often the refresher looks at keys and expiries
    # device identity (fleet_server.identity)
    identity_dir: Path | None = None  # the fleet CA (ca.key, ca.crt); None: <data_dir>/identity
    cert_days: float = 30.0  # lifetime of a device's client certificate; agents renew at 2/3 of it
    device_port: Integer = 0  # the mTLS device listener (downloads, renewal); 0: a free port
    mqtt_tls: bool = True  # mTLS + ACLs on the broker the server starts (off: anonymous, loopback)

    @property
    def database_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir.resolve() / 'fleet.db'}"

    @property
    def ca_dir(self) -> Path:
        return self.identity_dir or self.data_dir / "identity"

    @property
    def cloud_grpc_port(self) -> int | None:
        """The port the cloud endpoint's gRPC front-end binds (0: a free one), ``None`` when off."""
        if self.grpc_port is None:
            return 0 if self.port == 0 else self.port + 1
        return None if self.grpc_port < 0 else self.grpc_port

    @property
    def broker_spec(self) -> BrokerSpec:
        return parse_broker(self.broker)

    @property
    def store_spec(self) -> StoreSpec:
        return parse_store(self.store, self.data_dir)


def parse_broker(spec: str) -> BrokerSpec:
    """``auto``/``embedded``/``mosquitto``, or ``mqtt://host:port`` (``mqtts://`` with mTLS) for a
    broker run elsewhere."""
    if spec in BROKER_KINDS:
        return BrokerSpec(spec)
    parts = urlsplit(spec)
    if parts.scheme == "mqtt" and parts.hostname:
        return BrokerSpec("external", parts.hostname, parts.port or 1883)
    if parts.scheme == "mqtts" and parts.hostname:  # mTLS with the fleet's files (docs/identity.md)
        return BrokerSpec("external", parts.hostname, parts.port or 8883, tls=True)
    raise ConfigError(
        f"--broker: {spec!r} is not one of {', '.join(BROKER_KINDS)}, mqtt://host:port or mqtts://host:port"
    )


def parse_store(spec: str, data_dir: Path) -> StoreSpec:
    """``dir`` (under the data dir), a directory path (or ``file://`` URL), or ``s3://bucket/prefix``."""
    if spec == "dir":
        return StoreSpec("dir", path=data_dir / "artifacts")
    parts = urlsplit(spec)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"--store: {spec!r} names no bucket (s3://bucket/prefix)")
        return StoreSpec("s3", bucket=parts.netloc, prefix=parts.path.strip("/"))
    if parts.scheme == "file":
        return StoreSpec("dir", path=Path(parts.path))
    if parts.scheme == "" and spec:
        return StoreSpec("dir", path=Path(spec))
    raise ConfigError(f"--store: {spec!r} is not 'dir', a directory, or s3://bucket/prefix")


def load_settings(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``flags`` (``None`` values are skipped), then ``env`` (default: the process
    environment, ``EDGEFLEET_<FIELD>``), then the defaults. Raises :class:`ConfigError`."""
    try:
        settings = load(Settings, flags or {}, os.environ if env is None else env)
    except SettingsError as exc:
        unknown = sorted(p.key for p in exc.problems if p.kind == "unknown")
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(unknown)}") from None
        p = exc.problems[0]
        numeric = p.why.startswith(("expected an integer", "expected a number"))
        why = f"{p.value!r} is not a number" if numeric else p.why
        raise ConfigError(f"--{p.key.replace('_', '-')}: {why}") from None
    return check_settings(settings)


def check_settings(s: Settings) -> Settings:
    """Return ``s`` if every value can work, else raise :class:`ConfigError`."""
    if s.mqtt_protocol not in PROTOCOLS:
        raise ConfigError(f"--mqtt-protocol: {s.mqtt_protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if s.grpc_port is not None and not -1 <= s.grpc_port <= 65535:
        raise ConfigError(f"--grpc-port: {s.grpc_port} is not a TCP port (0: a free one, -1: no gRPC)")
    if s.tuf_timestamp_expiry_s < 60 or s.tuf_refresh_interval_s <= 0:
        raise ConfigError("--tuf-timestamp-expiry-s needs at least 60, --tuf-refresh-interval-s more than 0")
    if s.tuf_refresh_interval_s * 2 >= s.tuf_timestamp_expiry_s:
        raise ConfigError("--tuf-refresh-interval-s must be under half of --tuf-timestamp-expiry-s")
    if not 0 < s.cert_days <= 3650:
        raise ConfigError(f"--cert-days: {s.cert_days}; more than 0, at most 3650")
    if not 0 <= s.device_port <= 65535:
        raise ConfigError(f"--device-port: {s.device_port} is not a TCP port (0: a free one)")
    for flag, value in (
        ("telemetry-raw-retention-h", s.telemetry_raw_retention_h),
        ("telemetry-rollup-retention-d", s.telemetry_rollup_retention_d),
        ("telemetry-rollup-interval-s", s.telemetry_rollup_interval_s),
    ):
        if value < 0:
            raise ConfigError(f"--{flag}: must not be negative")
    if s.compile_workers < 1:
        raise ConfigError("--compile-workers: needs at least 1")
    spec = s.broker_spec
    if spec.kind == "embedded" and s.mqtt_protocol != "3.1.1":
        # amqtt speaks MQTT 3.1.1 only; asking for 5 explicitly would silently not be honoured.
        raise ConfigError("--broker embedded (amqtt) speaks MQTT 3.1.1 only: add --mqtt-protocol 3.1.1")
    store = s.store_spec
    if (
        store.kind == "s3"
        and s.s3_endpoint is not None
        and not s.s3_endpoint.startswith(("http://", "https://"))
    ):
        raise ConfigError(f"--s3-endpoint: {s.s3_endpoint!r} is not an http(s) URL")
    if s.db is not None and "://" not in s.db:
        raise ConfigError(f"--db: {s.db!r} is not a database URL (sqlite:///path, postgresql+psycopg://...)")
    return s
