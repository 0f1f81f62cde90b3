"""The agent daemon: wires serving, the update worker, enrollment and MQTT, and stops cleanly.

Start-up order is chosen so that a restarted device serves at once, even with no network: the
journal's active model is loaded and the inference API started first (then the ``ready`` line is
printed), an interrupted update resumes on the worker thread, and enrollment (only while the
device has no identity: ``--enroll-token``) and MQTT come up in the background, retrying until the
fleet server and broker answer (not at all with ``--standalone``). With an identity
(:mod:`agent.identity`) MQTT runs over mTLS, downloads go to the device listener with the device
certificate, and :mod:`agent.renewal` renews the certificate before it expires.

``/v2/health/ready`` speaks of inference only (a device serves without its broker); the MQTT
link's state is the ``edgefleet_agent_mqtt_connected`` gauge on ``/metrics``, and the link
restarts its own network loop should it die (:mod:`agent.mqtt_client`).
"""

from __future__ import annotations

import json
import logging
import signal
import ssl
import sys
import threading
from types import FrameType
from typing import TextIO

from agent import identity
from agent.config import AgentConfig
from agent.connection_count import ConnectionCounter
from agent.contracts.registration import EnrollmentRequest
from agent.contracts.state import DesiredState, ReportedState
from agent.errors import EnrollmentError
from agent.facts import device_facts
from agent.inbound import Quarantine
from agent.mqtt_client import AgentMqtt
from agent.registration import enroll
from agent.renewal import Renewer
from agent.serving import InferenceServer, InferenceService, Metrics, ModelRegistry, create_app, tuning
from agent.serving.grpc import GrpcServer
from agent.serving.offload import Offloader
from agent.telemetry import TelemetryBuffer, TelemetryPublisher, TelemetryRecorder
from agent.trust import TufSource, install_root
from agent.update import clean_stop
from agent.update.reconciler import Reconciler
from agent.update.worker import UpdateWorker
from device_profiles import DeviceProfile

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: AgentConfig, profile: DeviceProfile, *, stdout: TextIO | None = None) -> None:
        self.config = config
        self.profile = profile
        self._stdout = stdout or sys.stdout
        self.stopping = threading.Event()
        self.error: Exception | None = None
        self.registry = ModelRegistry()
        self.metrics = Metrics()
        setup = tuning.resolve(config, profile)
        self.telemetry = TelemetryRecorder() if config.telemetry_interval > 0 else None
        self.service = InferenceService(
            self.registry,
            self.metrics,
            scheduling=setup.scheduling,
            offloader=None if setup.offload is None else Offloader(setup.offload),
            telemetry=self.telemetry,
        )
        self.metrics.watch_service(self.service.queue_depths, self.service.model_refs)
        self.publisher: TelemetryPublisher | None = None
        self._policy_generation = -1
        self.server = InferenceServer(create_app(self.service), config.host, config.port)
        self.grpc = None if config.grpc_port < 0 else GrpcServer(self.service, config.host, config.grpc_port)
        # TUF (agent/trust): bundles only from the configured server, verified by signed metadata.
        self.downloader = TufSource(config.server, config.data_dir)
        # -- device identity: with one already, downloads use it from the first (resumed) update --
        self.renewer: Renewer | None = None
        self._contexts: list[ssl.SSLContext] = []
        self._enrolled = self._load_identity()
        if self._enrolled is not None:
            self._use_device_api(self._enrolled)
        self.reconciler = Reconciler(
            device_id=config.device_id,
            target=profile.target,
            runtime=profile.runtime.name,
            data_dir=config.data_dir,
            registry=self.registry,
            downloader=self.downloader,
            report=self._report,
            threads=setup.threads,
            spinning=setup.spinning,
            fit_threads=setup.fit_threads,
        )
        self.worker = UpdateWorker(self.reconciler)
        self.mqtt: AgentMqtt | None = None
        self._mqtt_lock = threading.Lock()
        self._link = threading.Thread(target=self._register_and_connect, name="edge-agent-link", daemon=True)
        self.metrics.mqtt_connected.set_function(self._link_up)
        self.inference_url: str | None = None

    def start(self) -> str:
        """Serve, announce readiness, resume, and connect in the background. Returns the inference URL."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._install_tuf_root()
        self.reconciler.clean_stop = clean_stop.take(self.config.data_dir, self.reconciler.journal.writes)
        self.reconciler.restore()
        if self.telemetry is not None:
            self.publisher = TelemetryPublisher(
                self.config.device_id,
                self.telemetry,
                TelemetryBuffer(
                    self.config.data_dir / "telemetry",
                    max_messages=self.config.telemetry_buffer_messages,
                    max_bytes=self.config.telemetry_buffer_bytes,
                ),
                self._send_telemetry,
                interval=self.config.telemetry_interval,
                active_models=lambda: [f"{n}:{v}" for n, v in self.service.model_refs()],
                queue_depths=self.service.queue_depths,
                metrics=self.metrics,
            )
        url = self.server.start()
        self.inference_url = self.config.advertise_url or url
        self.reconciler.inference_url = self.inference_url
        ready = {"event": "ready", "device_id": self.config.device_id, "inference_url": self.inference_url}
        if self.grpc is not None:
            ready["grpc_address"] = self.grpc.start()
        print(json.dumps(ready), file=self._stdout, flush=True)
        self.worker.start()
        self._link.start()
        if self.publisher is not None:
            self.publisher.start()
        return self.inference_url

    def _install_tuf_root(self) -> None:
        """TUF: ``--tuf-root`` seeds <data dir>/trust/root.json when enrolment has not written one."""
        if self.config.tuf_root is None:
            return
        try:
            if install_root(self.config.data_dir, self.config.tuf_root):
                log.info("trusting the TUF root in %s", self.config.tuf_root)
        except (OSError, ValueError) as exc:
            raise OSError(f"--tuf-root {self.config.tuf_root}: {exc}") from exc

    def stop(self) -> None:
        """Finish or interrupt the update step (the journal resumes it), say offline, stop serving."""
        self.stopping.set()
        if not self.worker.stop(timeout=15.0):
            log.warning("the update step did not finish in time; it resumes at the next start")
        # If the step still running writes the journal after this, the counts differ at the next
        # start and it is treated as a crash (the safe side).
        clean_stop.mark(self.config.data_dir, self.reconciler.journal.writes)
        if self.publisher is not None:
            self.publisher.stop()  # its last window goes out (or to the buffer) before the link closes
        with self._mqtt_lock:
            mqtt, self.mqtt = self.mqtt, None
        if mqtt is not None:
            mqtt.stop()
        if self.renewer is not None:
            self.renewer.stop()
        self.server.stop()
        if self.grpc is not None:
            self.grpc.stop()
        self.registry.close()
        self.downloader.close()
        log.info("edge-agent stopped")

    def _on_desired(self, desired: DesiredState) -> None:
        """Serving settings take effect at once (threads at the next load); the update is queued."""
        if desired.generation > self._policy_generation:
            self._policy_generation = desired.generation
            setup = tuning.resolve(self.config, self.profile, desired.serving, desired.offload)
            self.service.reconfigure(setup.scheduling, setup.offload)
            self.reconciler.tune(setup.threads, setup.spinning, setup.fit_threads)
        self.worker.submit(desired)

    def _link_up(self) -> float:
        mqtt = self.mqtt
        return 1.0 if mqtt is not None and mqtt.is_up() else 0.0

    def _report(self, state: ReportedState) -> None:
        with self._mqtt_lock:
            mqtt = self.mqtt
        if mqtt is not None:
            mqtt.publish_reported(state)

    def _send_telemetry(self, payload: bytes) -> bool:
        with self._mqtt_lock:
            mqtt = self.mqtt
        return mqtt is not None and mqtt.publish_telemetry(payload)

    # -- device identity (agent.identity, agent.registration, agent.renewal) ---------------------

    def _load_identity(self) -> identity.Enrolled | None:
        try:
            enrolled = identity.load_enrolled(self.config.data_dir)
        except (OSError, ValueError) as exc:
            log.error(
                "the device identity in %s can't be read (%s); enrolling again", self.config.data_dir, exc
            )
            return None
        if enrolled is not None:
            cn = identity.certificate(self.config.data_dir).subject.rfc4514_string()
            if cn != f"CN={self.config.device_id}":
                log.error(
                    "the stored certificate is for %s, not %s; enrolling again", cn, self.config.device_id
                )
                return None
        return enrolled

    def _use_device_api(self, enrolled: identity.Enrolled) -> None:
        """Downloads (and renewal) on the device listener with the device certificate."""
        if enrolled.device_api is None:
            return
        ctx = identity.tls_context(self.config.data_dir)
        self._contexts.append(ctx)
        self.downloader.use(
            enrolled.device_api, identity.device_http_client(self.config.data_dir, context=ctx)
        )

    def _enroll(self) -> identity.Enrolled | None:
        """Enroll with the token; ``None`` when stopped first. Raises :class:`EnrollmentError`."""
        token = self.config.enroll_token
        if not token:
            raise EnrollmentError(
                f"this device has no identity in {self.config.data_dir / 'identity'}: start it once with "
                "--enroll-token (or EDGEFLEET_AGENT_ENROLL_TOKEN); an admin makes one with "
                "'edgectl devices enroll-token create --group G'"
            )
        body = EnrollmentRequest(
            token=token,
            device_id=self.config.device_id,
            profile=self.profile.name,
            csr=identity.make_csr(self.config.data_dir, self.config.device_id),
            labels=dict(self.config.labels),
            facts=device_facts(self.inference_url),
        )
        answer = enroll(self.config.server, body, stop=self.stopping)
        if answer is None:
            return None
        enrolled = identity.store_enrollment(self.config.data_dir, answer)
        log.info("enrolled with %s as %s", self.config.server, self.config.device_id)
        self._use_device_api(enrolled)
        return enrolled

    def _register_and_connect(self) -> None:
        if self.config.standalone:
            log.info("standalone: serving the installed models; no enrollment, MQTT or updates")
            return
        try:
            enrolled = self._enrolled or self._enroll()
        except (EnrollmentError, ValueError, OSError) as exc:
            log.error("%s", exc)
            self.error = exc
            self.stopping.set()
            return
        if enrolled is None:
            return
        tls = None
        if enrolled.mqtt.tls:
            tls = identity.tls_context(self.config.data_dir)
            self._contexts.append(tls)
        if enrolled.device_api is not None:
            self.renewer = Renewer(
                self.config.data_dir,
                self.config.device_id,
                enrolled.device_api,
                self._contexts,
                interval=self.config.renew_check_s,
            )
            self.renewer.start()
        mqtt = AgentMqtt(
            self.config.device_id,
            enrolled.mqtt,
            on_desired=self._on_desired,
            connections=ConnectionCounter(self.config.data_dir / "mqtt-connections"),
            quarantine=Quarantine(self.config.data_dir / "mqtt-quarantine.json"),
            on_refused=lambda kind, reason: self.metrics.mqtt_refused.labels(kind, reason).inc(),
            on_loop_restart=self.metrics.mqtt_loop_restarts.inc,
            tls=tls,
        )
        with self._mqtt_lock:
            if self.stopping.is_set():
                return
            mqtt.publish_reported(self.reconciler.reported())  # sent on connect
            self.mqtt = mqtt
        mqtt.start()


def run_agent(config: AgentConfig, profile: DeviceProfile) -> int:
    """Run until SIGTERM/SIGINT (exit 0), or fail: a data directory or port that can't be used,
    an enrollment refusal or no identity and no token (exit 1)."""
    try:
        agent = Agent(config, profile)
    except OSError as exc:
        log.error("cannot use the data directory %s: %s", config.data_dir, exc)
        return 1

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        agent.stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            agent.start()
        except OSError as exc:
            log.error(
                "cannot start: %s (inference API %s:%d, gRPC port %d, data directory %s)",
                exc,
                config.host,
                config.port,
                config.grpc_port,
                config.data_dir,
            )
            agent.stop()
            return 1
        while not agent.stopping.wait(1.0):
            pass
        agent.stop()
        return 1 if agent.error is not None else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
