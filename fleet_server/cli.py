"""``fleet-server``: ``serve`` (the default command) and ``db upgrade``.

When the server is ready it prints one JSON line to stdout and nothing else goes there::

    {"event": "ready", "url": "http://127.0.0.1:PORT", "device_api": "https://127.0.0.1:PORT",
     "mqtt": {"host", "port", "protocol", "tls"},
     "dashboard": "http://127.0.0.1:PORT/dashboard", "grpc": "127.0.0.1:PORT" (or null)}

``grpc`` is the cloud inference endpoint's gRPC address (the same models as ``/v2`` over HTTP).

Logs go to stderr. SIGTERM and SIGINT stop the server cleanly, broker child included. Exit
codes: 0 after a clean stop, 1 when start-up failed, 2 for unusable settings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import typer

from fleet_server.errors import FleetError

log = logging.getLogger("fleet_server")

app = typer.Typer(add_completion=False, help="EdgeFleet fleet server.", no_args_is_help=False)
db_app = typer.Typer(add_completion=False, help="Database tasks.")
app.add_typer(db_app, name="db")

SUBCOMMANDS = ("serve", "db")
OWN_PACKAGES = frozenset({"edgectl", "compilers", "device_profiles", "agent", "fleet_server"})


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("transitions", "amqtt", "botocore", "boto3", "s3transfer", "urllib3", "alembic.runtime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one, chosen by the kernel), with
    TCP_NODELAY (see :func:`agent.serving.sockets.tcp_listener`)."""
    from agent.serving.sockets import tcp_listener

    sock = tcp_listener(host, port)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"fleet-server: {message}", err=True)
    return typer.Exit(code)


def _settings(flags: dict[str, Any]) -> Any:
    from fleet_server.config import load_settings

    try:
        return load_settings(flags)
    except FleetError as exc:
        raise _fail(exc.message, 2) from exc


@app.command()
def serve(
    host: str | None = typer.Option(None, help="address to listen on [env EDGEFLEET_HOST; 127.0.0.1]"),
    port: int | None = typer.Option(None, help="port; 0 picks a free one [EDGEFLEET_PORT; 8080]"),
    grpc_port: int | None = typer.Option(
        None, help="cloud inference gRPC port; 0 a free one, -1 off [EDGEFLEET_GRPC_PORT; port + 1]"
    ),
    data_dir: Path | None = typer.Option(
        None, help="state directory [EDGEFLEET_DATA_DIR; .edgefleet/server]"
    ),
    db: str | None = typer.Option(None, help="database URL [EDGEFLEET_DB; sqlite:///<data-dir>/fleet.db]"),
    store: str | None = typer.Option(
        None, help="'dir', a directory, or s3://bucket/prefix [EDGEFLEET_STORE]"
    ),
    s3_endpoint: str | None = typer.Option(
        None, help="S3 endpoint URL (MinIO, moto) [EDGEFLEET_S3_ENDPOINT]"
    ),
    broker: str | None = typer.Option(
        None, help="auto | embedded | mosquitto | mqtt://host:port [EDGEFLEET_BROKER]"
    ),
    mqtt_protocol: str | None = typer.Option(None, help="5 or 3.1.1 [EDGEFLEET_MQTT_PROTOCOL; 5]"),
    token: str | None = typer.Option(None, help="bootstrap admin bearer token [EDGEFLEET_TOKEN; none]"),
    public_url: str | None = typer.Option(
        None, help="URL devices reach the server at [EDGEFLEET_PUBLIC_URL]"
    ),
    compile_workers: int | None = typer.Option(None, help="parallel compiles [EDGEFLEET_COMPILE_WORKERS; 1]"),
    events_heartbeat_s: float | None = typer.Option(
        None, help="seconds between heartbeats on a quiet event stream [EDGEFLEET_EVENTS_HEARTBEAT_S; 15]"
    ),
    telemetry_raw_retention_h: float | None = typer.Option(
        None, help="hours raw telemetry is kept [EDGEFLEET_TELEMETRY_RAW_RETENTION_H; 24]"
    ),
    telemetry_rollup_retention_d: float | None = typer.Option(
        None, help="days one-minute telemetry rollups are kept [EDGEFLEET_TELEMETRY_ROLLUP_RETENTION_D; 30]"
    ),
    log_level: str | None = typer.Option(None, help="debug | info | warning [EDGEFLEET_LOG_LEVEL; info]"),
    keys_dir: Path | None = typer.Option(
        None, help="TUF server keys, DIR/server of `edgectl keys init --dir DIR` [EDGEFLEET_KEYS_DIR]"
    ),
    tuf_timestamp_expiry_s: float | None = typer.Option(
        None, help="TUF timestamp validity in seconds [EDGEFLEET_TUF_TIMESTAMP_EXPIRY_S; 86400]"
    ),
    tuf_refresh_interval_s: float | None = typer.Option(
        None, help="seconds between TUF re-signing passes [EDGEFLEET_TUF_REFRESH_INTERVAL_S; 60]"
    ),
    identity_dir: Path | None = typer.Option(
        None, help="fleet CA directory (ca.key, ca.crt; made if absent) [EDGEFLEET_IDENTITY_DIR]"
    ),
    cert_days: float | None = typer.Option(
        None, help="device certificate lifetime in days; renewed at 2/3 [EDGEFLEET_CERT_DAYS; 30]"
    ),
    device_port: int | None = typer.Option(
        None, help="mTLS device listener port (downloads, renewal); 0 a free one [EDGEFLEET_DEVICE_PORT; 0]"
    ),
    mqtt_tls: bool | None = typer.Option(
        None,
        "--mqtt-tls/--no-mqtt-tls",
        help="mTLS + per-device ACLs on the Mosquitto it starts [EDGEFLEET_MQTT_TLS; on]",
    ),
) -> None:
    """Run the server (REST API, broker, rollout controller, compile workers)."""
    flags = {k: v for k, v in locals().items() if v is not None}
    settings = _settings(flags)
    setup_logging(settings.log_level)

    import uvicorn

    from fleet_server.app import create_app

    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        raise _fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}", 2) from exc
    bound_port = sock.getsockname()[1]
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    shown_host = f"[{shown_host}]" if ":" in shown_host else shown_host
    url = f"http://{shown_host}:{bound_port}"
    try:
        fastapi_app = create_app(settings)
    except FleetError as exc:
        sock.close()
        raise _fail(exc.message, 2) from exc
    fleet = fastapi_app.state.fleet

    def ready() -> None:
        line = {
            "event": "ready",
            "url": url,
            "device_api": fleet.device_api_url,
            "mqtt": fleet.mqtt.to_dict() if fleet.mqtt else None,
            "dashboard": f"{url}/dashboard",
            "grpc": fastapi_app.state.grpc_address,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        log.info("ready at %s (dashboard %s/dashboard)", url, url)

    class ReadyServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                ready()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Event streams never end by themselves: end them first, or they hold the stop
            # for the whole graceful timeout.
            fastapi_app.state.live.stop()
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(
        fastapi_app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = ReadyServer(config)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # SIGINT is a normal stop
            server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(
    data_dir: Path | None = typer.Option(None, help="state directory [EDGEFLEET_DATA_DIR]"),
    db: str | None = typer.Option(None, help="database URL [EDGEFLEET_DB]"),
) -> None:
    """Apply the database migrations (the server also does this at start-up)."""
    settings = _settings({k: v for k, v in {"data_dir": data_dir, "db": db}.items() if v is not None})
    setup_logging(settings.log_level)
    from fleet_server.db import current_revision, make_engine, upgrade

    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        revision = current_revision(engine)
    except Exception as exc:
        raise _fail(f"migration failed: {exc}", 1) from exc
    finally:
        engine.dispose()
    typer.echo(json.dumps({"event": "db_upgraded", "revision": revision}))


def run(argv: list[str] | None = None) -> None:
    """Entry point. ``fleet-server [flags]`` means ``fleet-server serve [flags]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in SUBCOMMANDS and args[0] not in ("--help", "-h")):
        args = ["serve", *args]
    try:
        app(args=args, prog_name="fleet-server")
    except ModuleNotFoundError as exc:
        # A device install (edgefleet[agent]) carries this entry point but not the server's
        # libraries: say which extra to install instead of a traceback.
        if (exc.name or "").partition(".")[0] in OWN_PACKAGES:
            raise
        print(
            f"fleet-server needs the server extra ({exc.name} is not installed): "
            "pip install 'edgefleet[server]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
