"""The running fleet server's parts, built from :class:`Settings` and started and stopped in order:
database (migrated), artifact store, device profiles, metrics, compile worker, broker, MQTT
bridge, rollout controller. The REST layer reaches them through ``app.state.fleet``."""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agent.contracts import TOPIC_ROOT
from device_profiles import DeviceProfile, load_profiles
from fleet_server import db
from fleet_server.broker import BrokerEndpoint, RunningBroker, start_broker
from fleet_server.compile_jobs import CompileWorker
from fleet_server.config import Settings
from fleet_server.controller import RolloutController
from fleet_server.identity.device_listener import DeviceListener
from fleet_server.identity.service import Identity
from fleet_server.metrics import Metrics
from fleet_server.mqtt_bridge import MqttBridge
from fleet_server.rollout.gates import Quality
from fleet_server.store import ArtifactStore, open_store
from fleet_server.telemetry import TelemetryIngest, TelemetryJobs, figures_since
from fleet_server.trust import TrustService, tuf_service

log = logging.getLogger(__name__)


BRIDGE_CONNECT_WAIT_S = 5.0  # ready should mean subscribed, so first reports aren't missed


def default_client_id(settings: Settings) -> str:
    """Stable across restarts of one server (so the broker keeps its session), different between
    servers on different hosts or data dirs."""
    seed = f"{socket.gethostname()}:{settings.data_dir.resolve()}"
    return f"fleet-server-{hashlib.sha256(seed.encode()).hexdigest()[:10]}"


class Fleet:
    def __init__(self, settings: Settings, profiles: dict[str, DeviceProfile] | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = db.make_engine(settings.database_url)
        self.sessions: sessionmaker[Session] = db.make_sessions(self.engine)
        self.read_sessions: sessionmaker[Session] = db.make_read_sessions(self.engine)
        self.store: ArtifactStore = open_store(settings.store_spec, settings.s3_endpoint, settings.s3_region)
        self.profiles = profiles if profiles is not None else load_profiles()
        self.metrics = Metrics()
        self.metrics.watch_db(self.read_sessions)
        # TUF repository (fleet_server/trust): refuses to build without keys, saying how to make them.
        self.tuf: TrustService = tuf_service(settings, self.store, self.sessions)
        self.worker = CompileWorker(
            self.sessions,
            self.store,
            settings.data_dir / "work",
            workers=settings.compile_workers,
            metrics=self.metrics,
            on_done=lambda _id: self.controller.wake(),
            sign=self.tuf.sign_bundle,
        )
        self.controller = RolloutController(
            self.sessions,
            self.profiles,
            compiler=self.worker,
            public_url=settings.public_url,
            interval=settings.reconcile_interval_s,
            quality=rollout_quality,  # the quality gates read the stored telemetry
        )
        self.telemetry = TelemetryIngest(self.sessions, self.metrics)
        self.telemetry_jobs = TelemetryJobs(
            self.sessions,
            raw_keep=timedelta(hours=settings.telemetry_raw_retention_h),
            rollup_keep=timedelta(days=settings.telemetry_rollup_retention_d),
            interval_s=settings.telemetry_rollup_interval_s,
        )
        self.broker: RunningBroker | None = None
        self.bridge: MqttBridge | None = None
        # -- device identity (fleet_server.identity): the CA, broker TLS files, mTLS listener --
        self.identity = Identity(settings, self.sessions)
        self.device_listener: DeviceListener | None = None

    @property
    def mqtt(self) -> BrokerEndpoint | None:
        return None if self.broker is None else self.broker.endpoint

    def mqtt_info(self) -> dict[str, Any]:
        """What a device needs to connect (the enrollment answer's ``mqtt``)."""
        ep = self.mqtt
        host = None if ep is None else ep.host
        if ep is not None and ep.kind == "mosquitto" and self.settings.host in ("0.0.0.0", "", "::"):
            # every address: the public URL's host, or a wildcard (the agent then uses the server's)
            host = self.identity.public_host or "0.0.0.0"
        return {
            "host": host,
            "port": None if ep is None else ep.port,
            "protocol": self.settings.mqtt_protocol if ep is None else ep.protocol,
            "topic_root": TOPIC_ROOT,
            "keepalive": self.settings.mqtt_keepalive,
            "tls": bool(ep is not None and ep.tls),
        }

    @property
    def device_api_url(self) -> str | None:
        """The mTLS device listener's base URL (downloads, renewal), once started."""
        return None if self.device_listener is None else self.device_listener.url

    def make_bridge(self, ep: BrokerEndpoint) -> MqttBridge:
        """A bridge to ``ep`` with this server's client id (so it resumes the broker session)."""
        return MqttBridge(
            self.sessions,
            ep.host,
            ep.port,
            protocol=ep.protocol,
            client_id=self.settings.mqtt_client_id or default_client_id(self.settings),
            keepalive=self.settings.mqtt_keepalive,
            session_expiry_s=self.settings.session_expiry_s,
            metrics=self.metrics,
            on_report=self.controller.on_report,
            tls=self.identity.client_context() if ep.tls else None,
            telemetry=self.telemetry,
        )

    def start(self) -> None:
        """Migrate, then start worker, broker, bridge and controller. Raises :class:`ConfigError`."""
        db.upgrade(self.engine)
        self.tuf.start()  # TUF: before the worker, which signs into it
        self.telemetry.start()
        self.telemetry_jobs.start()
        self.worker.start()
        # -- device identity: TLS files first (the broker reads them), then the mTLS listener --
        files = self.identity.prepare()
        self.broker = start_broker(self.settings, files if self.settings.mqtt_tls else None)
        self.device_listener = DeviceListener(
            self,
            self.settings.host,
            self.settings.device_port,
            self.identity.server_context(),
            advertise=self.identity.public_host,
        )
        self.device_listener.start()
        ep = self.broker.endpoint
        self.bridge = self.make_bridge(ep)
        self.controller.publisher = self.bridge
        self.bridge.start()
        if not self.bridge.wait_connected(BRIDGE_CONNECT_WAIT_S):
            log.warning("MQTT broker %s:%d not reachable yet; the bridge keeps trying", ep.host, ep.port)
        self.controller.start()
        log.info(
            "store %s, database %s, MQTT %s %s:%d",
            self.store.describe(),
            self.engine.url.render_as_string(),
            ep.protocol,
            ep.host,
            ep.port,
        )

    def stop(self) -> None:
        """Stop everything started, in reverse order. Never raises."""
        for name, fn in (
            ("device listener", self.device_listener.stop if self.device_listener else None),
            ("controller", self.controller.stop),
            ("bridge", self.bridge.stop if self.bridge else None),
            ("telemetry writer", self.telemetry.stop),
            ("telemetry jobs", self.telemetry_jobs.stop),
            ("worker", self.worker.stop),
            ("tuf", self.tuf.stop),
            ("broker", self.broker.stop if self.broker else None),
            ("database", self.engine.dispose),
        ):
            if fn is None:
                continue
            try:
                fn()
            except Exception:
                log.exception("stopping the %s failed", name)


def rollout_quality(session: Any, device_ids: Sequence[str], model_ref: str, since: float) -> Quality | None:
    """The rollout gates' telemetry source: the stored windows of ``model_ref`` on ``device_ids``
    since ``since`` (epoch s), as the gates' figures; ``None`` when none was stored."""
    f = figures_since(session, device_ids, model_ref, since)
    if f is None:
        return None
    return Quality(f.requests, f.errors, f.p95_ms, f.offload_ratio, dict(f.class_counts))
