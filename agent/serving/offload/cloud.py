"""The I/O shell of offloading: an Open Inference Protocol v2 client for the cloud endpoint, and
the :class:`Offloader` that the inference service asks where each request runs.

The client speaks plain OIP v2 over HTTP with the binary tensor extension, so the cloud side can
be the fleet server's endpoint, Triton or KServe. A request goes out under the model's name and
version; its time-out is the latency budget, so a slow cloud answer counts as a failure for the
breaker instead of a late success. Foreign errors (httpx, bad responses) become
:class:`CloudError` here, at the seam.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from agent.serving.errors import Overloaded
from agent.serving.offload.breaker import CircuitBreaker
from agent.serving.offload.policy import OffloadSettings, Route, route
from agent.serving.oip import DATATYPES, HEADER_LENGTH, oip_datatype


class CloudError(Exception):
    """The cloud endpoint failed, timed out or answered something that is not a valid result."""


class CloudClient:
    """A thread-safe OIP v2 HTTP client (binary tensors both ways)."""

    def __init__(self, url: str, timeout: float = 1.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def infer(
        self, name: str, version: str, inputs: dict[str, np.ndarray], timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Raises :class:`CloudError`."""
        head: dict[str, Any] = {"inputs": [], "parameters": {"binary_data_output": True}}
        blobs = []
        for n, a in inputs.items():
            raw = np.ascontiguousarray(a).tobytes()
            head["inputs"].append(
                {
                    "name": n,
                    "datatype": oip_datatype(a.dtype),
                    "shape": list(a.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            )
            blobs.append(raw)
        header = json.dumps(head).encode()
        try:
            r = self._http.post(
                f"/v2/models/{name}/versions/{version}/infer",
                content=header + b"".join(blobs),
                headers={HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"},
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise CloudError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if r.status_code != 200:
            raise CloudError(f"{self.url}: HTTP {r.status_code}: {r.text[:200]}")
        return _decode(r)

    def close(self) -> None:
        self._http.close()


def _decode(r: httpx.Response) -> dict[str, np.ndarray]:
    body = r.content
    length = r.headers.get(HEADER_LENGTH)
    try:
        n = int(length) if length is not None else len(body)
        head = json.loads(body[:n])
        out: dict[str, np.ndarray] = {}
        offset = n
        for t in head["outputs"]:
            dtype = np.dtype(DATATYPES[t["datatype"]])
            shape = [int(d) for d in t["shape"]]
            size = (t.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                out[t["name"]] = np.frombuffer(body[offset : offset + size], dtype=dtype).reshape(shape)
                offset += size
            else:
                out[t["name"]] = np.asarray(t["data"], dtype=dtype).reshape(shape)
        return out
    except (ValueError, KeyError, TypeError) as exc:
        raise CloudError(f"the cloud endpoint's answer is not a valid inference response: {exc}") from exc


class Offloader:
    """Decides each request's route and runs the cloud ones, guarded by a circuit breaker.

    ``client`` is anything with :meth:`CloudClient.infer`'s signature; ``clock`` drives the
    breaker's cooldown.
    """

    def __init__(
        self,
        settings: OffloadSettings,
        client: CloudClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_result: Callable[[Route, bool], None] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client if client is not None else (CloudClient(settings.url) if settings.url else None)
        self.breaker = CircuitBreaker(settings.failure_threshold, settings.cooldown)
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._pool = ThreadPoolExecutor(max_workers=settings.max_in_flight, thread_name_prefix="offload")
        self.share = 0.0  # moving average of the share of requests sent to the cloud
        self._on_result = on_result

    @property
    def budget(self) -> float | None:
        return self.settings.budget

    def decide(
        self, estimated_wait: float, service_time: float, queue_full: bool = False, remeasure: bool = False
    ) -> Route:
        """The route for a request arriving now. A CLOUD answer has reserved room among the cloud
        requests in flight (and, when the breaker is half-open, the probe): the caller must then
        call :meth:`infer`. ``remeasure``: the device is idle and its estimate stale (see
        :func:`~agent.serving.offload.policy.route`)."""
        with self._lock:
            # Admit locally against a share of the budget: the estimate is a mean, and a request
            # admitted right at the budget misses it whenever a run takes longer than average.
            full = self.settings.budget
            budget = None if full is None else full * self.settings.headroom
            local_ok = not queue_full and (
                remeasure or budget is None or estimated_wait + service_time <= budget
            )
            cap = self.settings.max_share
            cloud = (
                not local_ok
                and self.client is not None
                and self._in_flight < self.settings.max_in_flight
                and (cap is None or self.share < cap)
                and self.breaker.allow(self._clock())
            )
            r = route(
                estimated_wait,
                service_time,
                budget,
                queue_full=queue_full,
                cloud_allowed=cloud,
                remeasure=remeasure,
            )
            self.share = 0.99 * self.share + (0.01 if r is Route.CLOUD else 0.0)
            if r is Route.CLOUD:
                self._in_flight += 1
            return r

    def shed(self, estimated_wait: float) -> Overloaded:
        """The error for a shed request, with a retry hint."""
        why = "the cloud endpoint is unavailable" if self.client is not None else "no cloud endpoint is set"
        return Overloaded(
            f"serving this request locally would miss the latency budget and {why}",
            retry_after=max(0.05, estimated_wait, self.breaker.cooldown if self.client else 0.0),
        )

    async def infer(self, name: str, version: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one request on the cloud endpoint (after :meth:`decide` said CLOUD).
        Raises :class:`CloudError`; the breaker has counted it."""
        assert self.client is not None
        client = self.client
        loop = asyncio.get_running_loop()
        ok = False
        try:
            out = await loop.run_in_executor(
                self._pool, client.infer, name, version, inputs, self.settings.budget
            )
            ok = True
            return out
        finally:
            with self._lock:
                self._in_flight -= 1
                self.breaker.record(ok, self._clock())
            if self._on_result is not None:
                self._on_result(Route.CLOUD, ok)

    def close(self) -> None:
        """Stop taking requests; those already sent finish."""
        self._pool.shutdown(wait=False)
        if self.client is not None:
            self.client.close()
