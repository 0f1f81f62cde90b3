"""Many simulated devices in one process: register them, connect them, let them update.

::

    sim = Simulator(SimConfig(server_url, devices=20, labels={"site": "sim"}), Faults(fail_rate=0.1))
    sim.start()                   # registered and connected (offline ones only registered)
    ...                           # deploy to their group through the API
    sim.wait_final(generation=1)  # or poll sim.summary()
    sim.stop()

Devices register in parallel through a :class:`~edgectl.simulate.registrar.Registrar` (a few
threads, since the call blocks), then every MQTT client runs on one
:class:`~edgectl.simulate.netloop.NetLoop` thread; connects are paced so the broker does not see
thousands at once. Faults can be changed while running (:meth:`Simulator.set_faults`): they
apply to the next update and telemetry window. Per-device timestamps (desired received, final
report sent) are monotonic seconds of this process; :attr:`Simulator.wall_offset` turns them
into wall-clock time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import random
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from agent.contracts.state import DesiredModel, ErrorCode
from edgectl.simulate.device import SimDevice
from edgectl.simulate.faults import Faults
from edgectl.simulate.netloop import NetLoop
from edgectl.simulate.registrar import Credentials, Registrar, RegistrationFailed, RestRegistrar

log = logging.getLogger(__name__)

FACTS = {"simulated": True, "agent_version": "edgectl-simulate"}


class SimulatorError(RuntimeError):
    """The simulated fleet could not start (registration refused, the broker unreachable)."""


@dataclass(frozen=True)
class SimConfig:
    """``profiles`` are cycled through the devices; ids are ``{prefix}-{n}``. ``step_delay`` is
    the range of the random pause between two reports of an update; ``fetch`` downloads each
    bundle for real (and checks its size and sha256) instead of skipping the bytes.
    ``connect_rate`` paces first connects (per second)."""

    server_url: str
    devices: int = 10
    profiles: tuple[str, ...] = ("x86-64-avx2",)
    labels: Mapping[str, str] = field(default_factory=dict)
    prefix: str = "sim"
    telemetry_interval: float = 5.0
    step_delay: tuple[float, float] = (0.01, 0.1)
    fetch: bool = False
    register_workers: int = 8
    connect_rate: float = 1000.0

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError("a simulated fleet needs at least one device")
        if not self.profiles:
            raise ValueError("name at least one device profile")
        lo, hi = self.step_delay
        if not 0 <= lo <= hi:
            raise ValueError(f"step_delay must be 0 <= low <= high, not {self.step_delay}")
        if self.telemetry_interval < 0:
            raise ValueError("telemetry_interval must not be negative")


def _raise_fd_limit(wanted: int) -> None:
    """One socket per connected device: lift the soft open-file limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning("open-file limit %d is below the %d this fleet needs", target, wanted)


def device_ids(count: int, prefix: str) -> list[str]:
    width = max(2, len(str(count)))
    return [f"{prefix}-{i + 1:0{width}d}" for i in range(count)]


class Simulator:
    def __init__(
        self,
        config: SimConfig,
        faults: Faults | None = None,
        registrar: Registrar | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.faults = faults or Faults()
        self._stop_registering = threading.Event()
        self.registrar: Registrar = registrar or RestRegistrar(config.server_url, stop=self._stop_registering)
        self.loop = NetLoop(clock)
        self.rng = random.Random(self.faults.seed)
        self.counts: Counter[str] = Counter()
        self.wall_offset = time.time() - clock()
        self._final = threading.Condition()
        self._fetcher: ThreadPoolExecutor | None = None
        self._http: Any = None
        self.devices: dict[str, SimDevice] = {}
        for i, device_id in enumerate(device_ids(config.devices, config.prefix)):
            mode = (
                "offline"
                if self.faults.offline(device_id)
                else "unresponsive"
                if self.faults.unresponsive(device_id)
                else "normal"
            )
            profile = config.profiles[i % len(config.profiles)]
            self.devices[device_id] = SimDevice(self, device_id, profile, dict(config.labels), mode)
        self.started = False

    # -- start / stop ----------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        """Register every device, then connect all but the offline ones; returns once they are
        connected. Raises :class:`SimulatorError` (and stops what it started) when a registration
        is refused or the devices are not connected within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        _raise_fd_limit(len(self.devices) + 256)
        self.loop.start()
        self.started = True
        try:
            creds = self._register_all()
            interval = 1.0 / self.config.connect_rate if self.config.connect_rate > 0 else 0.0
            to_connect = [d for d in self.devices.values() if d.mode != "offline"]

            def schedule() -> None:
                for n, dev in enumerate(to_connect):
                    c = creds[dev.device_id]
                    self.loop.call_later(n * interval, functools.partial(dev.open, c))

            self.loop.run_sync(schedule)
            while time.monotonic() < deadline:
                if self.loop.run_sync(lambda: all(d.connected for d in to_connect)):
                    return
                time.sleep(0.05)
            missing = self.loop.run_sync(lambda: sum(not d.connected for d in to_connect))
            raise SimulatorError(
                f"{missing} of {len(to_connect)} simulated devices are not connected to the broker "
                f"after {timeout:g}s; is it reachable from here?"
            )
        except BaseException:
            self.stop()
            raise

    def _register_all(self) -> dict[str, Credentials]:
        def one(dev: SimDevice) -> tuple[str, Credentials]:
            c = self.registrar.register(dev.device_id, dev.profile, dev.labels, dict(FACTS))
            dev.registered_at = self.loop.clock()
            return dev.device_id, c

        workers = max(1, min(self.config.register_workers, len(self.devices)))
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="simulate-register") as pool:
                return dict(pool.map(one, self.devices.values()))
        except RegistrationFailed as exc:
            raise SimulatorError(f"registration failed: {exc}") from exc

    def stop(self, timeout: float = 10.0) -> None:
        """Every connected device says offline and disconnects; then the loop ends."""
        self._stop_registering.set()
        if self.started:
            self.started = False
            try:
                self.loop.run_sync(self._close_all, timeout)
                deadline = time.monotonic() + timeout
                while self.loop.connections and time.monotonic() < deadline:
                    time.sleep(0.05)
            except TimeoutError:
                log.warning("the network loop did not answer at stop")
            self.loop.stop()
        if self._fetcher is not None:
            self._fetcher.shutdown(wait=False, cancel_futures=True)
        if self._http is not None:
            self._http.close()
        self.registrar.close()

    def _close_all(self) -> None:
        for d in self.devices.values():
            d.close()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs and views -------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        """Use ``faults`` from now on (the devices' modes, fixed at start, stay)."""
        self.faults = faults

    def on_final(self, _dev: SimDevice, _generation: int) -> None:
        with self._final:
            self.counts["finals"] += 1
            self._final.notify_all()

    def query(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` on the loop thread (a consistent view of device state) and return its value."""
        return self.loop.run_sync(fn, timeout) if self.started else fn()

    def summary(self) -> dict[str, Any]:
        """Counts by device mode and update state, and the messages sent."""

        def collect() -> dict[str, Any]:
            devs = list(self.devices.values())
            return {
                "devices": len(devs),
                "modes": dict(Counter(d.mode for d in devs)),
                "connected": sum(d.connected for d in devs),
                "states": dict(Counter(str(d.state) for d in devs if d.mode == "normal")),
                "active": dict(Counter(d.active or "-" for d in devs if d.mode == "normal")),
                "errors": dict(Counter(d.error.code for d in devs if d.error is not None)),
                "messages": {k: self.counts[k] for k in ("reports", "telemetry", "refused")},
                "loop_errors": self.loop.errors,
            }

        return dict(self.query(collect))

    def timeline(self) -> dict[str, list[dict[str, Any]]]:
        """Per device, per desired generation: when it arrived, when the final report went out
        (monotonic seconds) and the outcome."""
        return dict(self.query(lambda: {d.device_id: d.timeline() for d in self.devices.values()}))

    def finals(self) -> dict[str, Any]:
        """The final reports of the devices' latest desired generation: ``{device_id: outcome}``
        (``COMMITTED`` or the error code) for those that sent one."""

        def collect() -> dict[str, Any]:
            out = {}
            for d in self.devices.values():
                t = d.times[max(d.times)] if d.times else None
                if t is not None and t.final_at is not None:
                    out[d.device_id] = t.outcome
            return out

        return dict(self.query(collect))

    def wait_final(self, count: int | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until ``count`` devices (default: every normal one) have sent a final report for
        their latest desired generation; returns :meth:`finals`. Raises ``TimeoutError``."""
        want = count if count is not None else sum(d.mode == "normal" for d in self.devices.values())
        deadline = time.monotonic() + timeout
        while True:
            done = self.finals()
            if len(done) >= want:
                return done
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{len(done)} of {want} simulated devices sent a final report in {timeout:g}s"
                )
            with self._final:
                self._final.wait(min(left, 0.5))

    # -- downloads (--fetch) ---------------------------------------------------------------------

    def fetch(
        self, dev: SimDevice, model: DesiredModel, done: Callable[[ErrorCode | None, str], None]
    ) -> None:
        """Download ``model`` on a worker thread; ``done(code, detail)`` runs on the loop thread
        (``code`` ``None`` when the size and sha256 are the declared ones)."""
        if self._fetcher is None:
            import httpx

            self._fetcher = ThreadPoolExecutor(4, thread_name_prefix="simulate-fetch")
            self._http = httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)
        base = (dev.creds.http_base if dev.creds else None) or self.config.server_url
        url = urljoin(base.rstrip("/") + "/", model.url)

        def run() -> None:
            code, detail = self._download(url, model)
            self.loop.call_soon_threadsafe(lambda: done(code, detail))

        self._fetcher.submit(run)

    def _download(self, url: str, model: DesiredModel) -> tuple[ErrorCode | None, str]:
        import httpx

        h, size = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", url) as resp:
                if resp.status_code != 200:
                    return ErrorCode.DOWNLOAD_FAILED, f"GET {url}: HTTP {resp.status_code}"
                for chunk in resp.iter_bytes(1 << 16):
                    size += len(chunk)
                    h.update(chunk)
        except httpx.HTTPError as exc:
            return ErrorCode.DOWNLOAD_FAILED, f"GET {url}: {type(exc).__name__}: {exc}"
        self.counts["downloads"] += 1
        if size != model.size:
            return ErrorCode.SIZE_MISMATCH, f"{model.ref}: {size} bytes, the desired state says {model.size}"
        if h.hexdigest() != model.sha256:
            return (
                ErrorCode.HASH_MISMATCH,
                f"{model.ref}: sha256 {h.hexdigest()[:16]}… is not the one declared",
            )
        return None, ""
