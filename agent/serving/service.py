"""The transport-neutral inference service: what the HTTP and gRPC front-ends both call.

It owns model lookup, the input and output checks, and where a request runs: on the device
(through the model's :class:`~agent.serving.scheduler.ModelScheduler`, which batches when that
pays) or on the cloud endpoint (through :class:`~agent.serving.offload.Offloader`, when serving
locally would miss the latency budget). The front-ends only decode their wire format into numpy
arrays, call :meth:`InferenceService.infer` and encode the :class:`InferResult`.

Errors are :mod:`agent.serving.errors` types; each front-end maps them to its own status codes in
one place.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent import __version__
from agent.contracts.manifest import TensorSpec
from agent.serving.errors import BadRequest, ModelNotFound, NotReady, ServingError
from agent.serving.metrics import Metrics
from agent.serving.models import LoadedModel, ModelRegistry
from agent.serving.offload import CloudError, Offloader, OffloadSettings, Route
from agent.serving.oip import oip_datatype
from agent.serving.scheduler import ModelScheduler, SchedulerSettings
from agent.telemetry.recorder import TelemetryRecorder

log = logging.getLogger(__name__)

SERVER_NAME = "edgefleet-agent"
EXTENSIONS = ("binary_tensor_data", "model_repository")
LOCAL = Route.LOCAL.value
CLOUD = Route.CLOUD.value


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str  # OIP datatype name (FP32, INT64, ...)
    shape: tuple[int, ...]  # -1 for a dynamic dimension


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferResult:
    """What a request produced: the outputs asked for (all, in the model's order, when none
    were named), the model that answered and where it ran (``local`` or ``cloud``)."""

    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    served_by: str = LOCAL


def _info(spec: TensorSpec) -> TensorInfo:
    return TensorInfo(spec.name, oip_datatype(spec.dtype), tuple(spec.shape))


class InferenceService:
    """Inference over whatever :class:`ModelRegistry` serves now.

    A request leases its model for as long as it runs, so a model switch never cuts one short:
    in-flight requests finish on the old model, new ones go to the new one.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: Metrics | None = None,
        scheduling: SchedulerSettings | None = None,
        offloader: Offloader | None = None,
        name: str = SERVER_NAME,
        telemetry: TelemetryRecorder | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics or Metrics()
        self.scheduling = scheduling or SchedulerSettings()
        self.offloader = offloader
        self.telemetry = telemetry
        self.name = name
        self.version = __version__
        self.extensions = EXTENSIONS
        self._schedulers: weakref.WeakKeyDictionary[LoadedModel, ModelScheduler] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    # -- health and metadata -------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.registry.ready()

    def model_info(self, name: str, version: str | None = None) -> ModelInfo:
        """Raises :class:`NotReady` (nothing loaded) or :class:`ModelNotFound`."""
        model = self.registry.find(name, version or None)
        m = model.manifest
        return ModelInfo(
            name=model.name,
            versions=(model.version,),
            platform=m.runtime,
            inputs=tuple(_info(t) for t in m.inputs),
            outputs=tuple(_info(t) for t in m.outputs),
            parameters={"target": m.target, "precision": m.precision},
        )

    def model_ready(self, name: str, version: str | None = None) -> bool:
        try:
            self.registry.find(name, version or None)
        except ServingError:
            return False
        return True

    def request_limit(self, name: str, version: str | None, ceiling: int) -> int:
        """The largest request body for this model: what its inputs can need (see
        :mod:`agent.serving.limits`), never above ``ceiling``; ``ceiling`` for an unknown model."""
        try:
            model = self.registry.find(name, version or None)
        except ServingError:
            return ceiling
        need = model.body_limit
        return ceiling if need is None else min(ceiling, need)

    def known(self, name: str) -> bool:
        """Whether ``name`` is served: only served names become metric label values."""
        return name in self.registry.names()

    # -- inference -----------------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        version: str | None,
        inputs: dict[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> InferResult:
        """Run one request. ``outputs`` names the outputs wanted (``None``: all); ``timeout``
        (seconds) bounds the wait in the local queue.

        Raises :class:`BadRequest` (a tensor that doesn't fit, naming it), :class:`ModelNotFound`,
        :class:`NotReady`, :class:`~agent.serving.errors.Overloaded` (shed: retry later) or
        :class:`~agent.serving.errors.DeadlineExceeded`.
        """
        outcome = "error"
        ref: str | None = None
        result: InferResult | None = None
        start = time.perf_counter()
        try:
            with self.registry.use(name, version or None) as model:
                ref = model.ref
                check_inputs(model.manifest.inputs, inputs)
                wanted = check_outputs(model.manifest.outputs, outputs)
                result = await self._route(model, inputs, timeout)
                outcome = "ok"
                picked = {n: result.outputs[n] for n in wanted}
                return InferResult(result.model_name, result.model_version, picked, result.served_by)
        except ServingError as exc:
            outcome = exc.outcome
            raise
        finally:
            if result is not None and outcome == "ok":
                self.metrics.model_series(name, result.model_version).ok.inc()
            else:
                self.metrics.requests.labels(name if self.known(name) else "_unknown", outcome).inc()
            rec = self.telemetry
            # Only a served model's requests count (an unknown name would grow the window);
            # refused inputs count as errors of the model they were sent to.
            if rec is not None and ref is not None:
                if result is None:
                    rec.record(ref, False)
                else:
                    took = time.perf_counter() - start
                    rec.record(ref, True, took, result.served_by == CLOUD, result.outputs)

    def infer_blocking(
        self,
        name: str,
        version: str | None,
        inputs: dict[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> InferResult:
        """:meth:`infer` for callers without an event loop (tests, benchmarks, the self-test)."""
        return asyncio.run(self.infer(name, version, inputs, outputs, timeout))

    async def _route(
        self, model: LoadedModel, inputs: dict[str, np.ndarray], timeout: float | None
    ) -> InferResult:
        scheduler = self.scheduler(model)
        off = self.offloader
        if off is not None:
            start = time.monotonic()
            q = off.settings.service_quantile
            wait, service = scheduler.estimated_wait(q), scheduler.service_time(q)
            where = off.decide(wait, service, scheduler.full(), scheduler.needs_remeasure())
            if where is Route.SHED:
                raise off.shed(wait)
            if where is Route.CLOUD:
                try:
                    outputs = await off.infer(model.name, model.version, inputs)
                    check_cloud_outputs(model.manifest.outputs, outputs)
                except CloudError as exc:
                    self.metrics.offload_errors.inc()
                    log.warning("offload of %s failed: %s", model.ref, exc)
                    # Fall back to the device only while that can still meet the budget.
                    left = (off.budget or 0.0) - (time.monotonic() - start)
                    if scheduler.full() or scheduler.estimated_wait(q) + scheduler.service_time(q) > left:
                        raise off.shed(scheduler.estimated_wait(q)) from exc
                else:
                    self.metrics.served_cloud.inc()
                    return InferResult(model.name, model.version, outputs, CLOUD)
        start = time.perf_counter()
        ran = scheduler.try_inline(inputs)
        local = ran if ran is not None else await asyncio.wrap_future(scheduler.submit(inputs, timeout))
        self.metrics.model_series(model.name, model.version).latency.observe(time.perf_counter() - start)
        self.metrics.served_local.inc()
        return InferResult(model.name, model.version, local, LOCAL)

    def queue_depths(self) -> dict[str, int]:
        """Requests waiting per served model (``name:version``), for telemetry and ``/metrics``."""
        with self._lock:
            return {m.ref: s.depth() for m, s in self._schedulers.items()}

    def model_refs(self) -> list[tuple[str, str]]:
        """(name, version) of every model served now."""
        return [(m.name, m.version) for m in self.registry.models()]

    def scheduler(self, model: LoadedModel) -> ModelScheduler:
        """The model's scheduler, made on first use. Its worker thread ends when idle, so an unloaded
        model's scheduler goes with the model."""
        with self._lock:
            sched = self._schedulers.get(model)
            if sched is None:
                sched = ModelScheduler(model.adapter, model.manifest, self.scheduling, label=model.ref)
                self._schedulers[model] = sched
            return sched

    def reconfigure(self, scheduling: SchedulerSettings, offload: OffloadSettings | None) -> None:
        """Apply new serving settings to running and future models; the offloader is replaced
        only when its settings changed (requests already sent to the cloud finish)."""
        with self._lock:
            self.scheduling = scheduling
            schedulers = list(self._schedulers.values())
            old = self.offloader
            if (old.settings if old else None) != offload:
                self.offloader = None if offload is None else Offloader(offload)
            else:
                old = None
        for s in schedulers:
            s.retune(scheduling)
        if old is not None:
            old.close()

    def close(self) -> None:
        if self.offloader is not None:
            self.offloader.close()
        with self._lock:
            schedulers = list(self._schedulers.values())
            self._schedulers.clear()
        for s in schedulers:
            s.stop()


def check_inputs(specs: Sequence[TensorSpec], given: dict[str, np.ndarray]) -> None:
    """Every input present, known, of the model's datatype and shape. Raises BadRequest naming it."""
    by_name = {t.name: t for t in specs}
    for name in given:
        if name not in by_name:
            raise BadRequest(f"unknown input {name!r} (inputs: {', '.join(by_name)})")
    for spec in specs:
        if spec.name not in given:
            raise BadRequest(f"input {spec.name!r} is missing")
        arr = given[spec.name]
        if arr.dtype != np.dtype(spec.dtype):
            raise BadRequest(
                f"input {spec.name!r}: datatype {arr.dtype.name} given, the model takes {spec.dtype}"
            )
        if arr.ndim != len(spec.shape) or any(
            w >= 0 and w != g for w, g in zip(spec.shape, arr.shape, strict=False)
        ):
            raise BadRequest(f"input {spec.name!r}: shape {list(arr.shape)} does not fit {list(spec.shape)}")


def check_cloud_outputs(specs: Sequence[TensorSpec], got: dict[str, np.ndarray]) -> None:
    """The cloud's answer has every output of the model, of its datatype. Raises CloudError."""
    for spec in specs:
        arr = got.get(spec.name)
        if arr is None:
            raise CloudError(f"the cloud's answer has no output {spec.name!r}")
        if arr.dtype != np.dtype(spec.dtype):
            raise CloudError(
                f"the cloud's output {spec.name!r} is {arr.dtype.name}, the model gives {spec.dtype}"
            )


def check_outputs(specs: Sequence[TensorSpec], wanted: Sequence[str] | None) -> list[str]:
    """The output names to return, in order. Raises BadRequest for an unknown or repeated one."""
    known = [t.name for t in specs]
    if wanted is None:
        return known
    seen: set[str] = set()
    for n in wanted:
        if n not in known:
            raise BadRequest(f"unknown output {n!r} (outputs: {', '.join(sorted(known))})")
        if n in seen:
            raise BadRequest(f"output {n!r} is asked for twice")
        seen.add(n)
    return list(wanted)


__all__ = [
    "CLOUD",
    "LOCAL",
    "InferResult",
    "InferenceService",
    "ModelInfo",
    "ModelNotFound",
    "NotReady",
    "TensorInfo",
    "check_inputs",
    "check_outputs",
]
