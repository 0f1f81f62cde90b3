"""The MQTT broker the server starts for itself when none is given.

- :class:`MosquittoBroker`: Mosquitto as a child process with a generated config, persistence in
  the data dir so retained desired states and queued QoS 1 messages survive a restart. With the
  fleet's TLS files (:mod:`fleet_server.identity.broker_files`) its one listener is mTLS
  (``require_certificate``, the certificate's CN as username, the CRL, the per-device ACL) on
  ``host`` and no plaintext listener is open; without them (``--mqtt-tls off``), one anonymous
  listener on 127.0.0.1. :meth:`MosquittoBroker.reload` (SIGHUP) makes it read the CRL and ACL
  again: new connections are checked against them, open ones stay (the caller drops those).
  Mosquitto started as root
  drops to the ``mosquitto`` user, which could not write the data dir, so the config says
  ``user root`` then.
- :class:`EmbeddedBroker`: amqtt in a background asyncio thread, for machines without Mosquitto.
  MQTT 3.1.1 only, in memory.

:func:`start_broker` picks one as the settings say and returns it with the endpoint to use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fleet_server.config import Settings
from fleet_server.errors import ConfigError
from fleet_server.identity.broker_files import TlsFiles

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class BrokerEndpoint:
    host: str
    port: int
    protocol: str  # "5" or "3.1.1"
    kind: str  # mosquitto | embedded | external
    tls: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "protocol": self.protocol, "tls": self.tls}


class RunningBroker(Protocol):
    endpoint: BrokerEndpoint

    def stop(self) -> None: ...

    def reload(self) -> None: ...


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now (another process could still take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def mosquitto_config(
    port: int,
    persistence_dir: Path,
    log_file: Path,
    as_root: bool,
    tls: TlsFiles | None = None,
    host: str = LOOPBACK,
) -> str:
    """The Mosquitto 2.x config text (pure): mTLS with ACLs when ``tls`` is given, else one
    anonymous listener on loopback."""
    if tls is None:
        lines = [f"listener {port} {LOOPBACK}", "allow_anonymous true"]
    else:
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"acl_file {tls.acl}",
            f"listener {port} {host}",
            f"cafile {tls.ca}",
            f"certfile {tls.server_cert}",
            f"keyfile {tls.server_key}",
            f"crlfile {tls.crl}",
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
        ]
    lines += [
        "persistence true",
        f"persistence_location {persistence_dir}/",
        "autosave_interval 10",
        "max_queued_messages 100000",
        "max_inflight_messages 200",
        f"log_dest file {log_file}",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if as_root:
        lines.append("user root")
    return "\n".join(lines) + "\n"


class MosquittoBroker:
    def __init__(
        self,
        binary: str,
        data_dir: Path,
        protocol: str = "5",
        port: int = 0,
        tls: TlsFiles | None = None,
        host: str = LOOPBACK,
    ) -> None:
        self.binary = binary
        self.dir = data_dir / "mosquitto"
        self.protocol = protocol
        self._port = port
        self.tls = tls
        self.host = host if tls is not None else LOOPBACK
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = BrokerEndpoint(self._reach(), port, protocol, "mosquitto", tls is not None)

    def _reach(self) -> str:
        """Where this server connects to it (loopback when it listens on every address)."""
        return LOOPBACK if self.host in ("0.0.0.0", "", "::") else self.host

    def start(self, attempts: int = 3) -> MosquittoBroker:
        """Start and wait until it accepts connections. Raises :class:`ConfigError`."""
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "mosquitto.conf"
        log_file = self.dir / "mosquitto.log"
        for attempt in range(attempts):
            port = self._port or free_port()
            conf.write_text(
                mosquitto_config(port, self.dir, log_file, os.geteuid() == 0, self.tls, self.host)
            )
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the server's terminal is the server's to handle
            )
            if wait_for_port(self._reach(), port, 10, self.proc):
                self.endpoint = BrokerEndpoint(
                    self._reach(), port, self.protocol, "mosquitto", self.tls is not None
                )
                log.info(
                    "mosquitto (pid %d) listening on %s:%d%s",
                    self.proc.pid,
                    self.host,
                    port,
                    " (mTLS, ACLs)" if self.tls else "",
                )
                return self
            self._kill()
            log.warning(
                "mosquitto did not start on port %d (attempt %d); see %s", port, attempt + 1, log_file
            )
        tail = log_file.read_text(errors="replace")[-500:] if log_file.exists() else ""
        raise ConfigError(f"mosquitto did not start ({self.binary}): {tail.strip() or 'no log'}")

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file, then exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self._kill()

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its config again, the CRL and ACL files with it (checked with
        Mosquitto 2.0: a revoked certificate is refused at the next connect)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)


class EmbeddedBroker:
    """amqtt running on its own event loop in a daemon thread."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self.endpoint = BrokerEndpoint(LOOPBACK, port, "3.1.1", "embedded")

    def start(self) -> EmbeddedBroker:
        from amqtt.broker import Broker  # imported only when the embedded broker is used

        port = self._port or free_port()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        started = threading.Event()
        failure: list[BaseException] = []

        async def boot() -> None:
            self._broker = Broker(config)
            await self._broker.start()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(boot())
            except BaseException as exc:  # reported to start()'s caller below
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        started.wait(15)
        # Broker.start() returns once the listener is bound (no probe: amqtt logs one as an error).
        if failure or not started.is_set():
            why = failure[0] if failure else "timeout"
            raise ConfigError(f"the embedded MQTT broker did not start on port {port}: {why}")
        self.endpoint = BrokerEndpoint(LOOPBACK, port, "3.1.1", "embedded")
        log.info("embedded MQTT 3.1.1 broker (amqtt) listening on %s:%d", LOOPBACK, port)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(10)
            except Exception:
                log.exception("amqtt shutdown failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def reload(self) -> None:
        return None


class ExternalBroker:
    """A broker run by someone else: nothing to start or stop."""

    def __init__(self, host: str, port: int, protocol: str, tls: bool = False) -> None:
        self.endpoint = BrokerEndpoint(host, port, protocol, "external", tls)

    def stop(self) -> None:
        return None

    def reload(self) -> None:
        log.warning("the broker is run elsewhere: make it read the fleet's CRL again yourself")


def start_broker(settings: Settings, tls: TlsFiles | None = None) -> RunningBroker:
    """Start (or point at) the broker ``settings.broker`` names. ``auto`` runs Mosquitto when its
    binary is there, else the embedded broker (and then MQTT 3.1.1, whatever was asked).
    ``tls``: the files for an mTLS Mosquitto (the embedded broker has no TLS and ignores them).
    Raises :class:`ConfigError`."""
    spec = settings.broker_spec
    if spec.kind == "external":
        assert spec.host is not None and spec.port is not None
        return ExternalBroker(spec.host, spec.port, settings.mqtt_protocol, spec.tls)
    binary = settings.mosquitto_bin if Path(settings.mosquitto_bin).exists() else shutil.which("mosquitto")
    if spec.kind == "mosquitto" or (spec.kind == "auto" and binary):
        if not binary:
            raise ConfigError(
                f"--broker mosquitto: no mosquitto binary at {settings.mosquitto_bin} or on PATH"
            )
        return MosquittoBroker(
            binary, settings.data_dir, settings.mqtt_protocol, tls=tls, host=settings.host
        ).start()
    if tls is not None:
        log.warning("no mosquitto binary: the embedded broker has no TLS; devices connect without identity")
    if settings.mqtt_protocol != "3.1.1":
        log.warning("no mosquitto binary: using the embedded broker, which speaks MQTT 3.1.1 only")
    return EmbeddedBroker().start()
