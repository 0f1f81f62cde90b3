"""Per-worker callers for each kind of row, and the one checked answer per row.

A caller owns its connection; requests are built before the clock starts and rotate through the
model's samples, so the timed loop only sends bytes and reads the answer (status checked, body
read in full, not decoded).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.serving.bodies import binary_body, decode_grpc, decode_http, grpc_request, json_body
from benchmarks.serving.grpc_client import GrpcCaller, service_pb
from benchmarks.serving.http_client import Connection, HttpError, build_request
from benchmarks.serving.models import BenchModel

HOST = "127.0.0.1"


class CheckError(RuntimeError):
    """A server's answer differs from in-process ONNX Runtime's, or could not be read."""


class InProcessCaller:
    """``InferenceSession.run`` on the session the agent's own loader opened."""

    def __init__(self, session: Any, input_name: str, output_names: list[str], model: BenchModel) -> None:
        self._run = session.run
        self._feeds = [{input_name: model.sample(i)} for i in range(len(model.samples))]
        self._outputs = output_names
        self._i = 0

    def __call__(self) -> None:
        self._run(self._outputs, self._feeds[self._i % len(self._feeds)])
        self._i += 1


class HttpCaller:
    def __init__(self, port: int, requests: list[bytes]) -> None:
        self._conn = Connection(HOST, port)
        self._requests = requests
        self._i = 0

    def __call__(self) -> None:
        r = self._conn.send(self._requests[self._i % len(self._requests)])
        self._i += 1
        if r.status != 200:
            raise HttpError(f"HTTP {r.status}: {r.body[:200]!r}")

    def close(self) -> None:
        self._conn.close()


def http_requests(
    model: BenchModel, port: int, input_name: str, binary: bool
) -> list[tuple[bytes, dict[str, str]]]:
    """(pre-built request, the body's headers) per sample."""
    make = binary_body if binary else json_body
    out = []
    for i in range(len(model.samples)):
        body, headers = make(input_name, model.sample(i))
        out.append((build_request(HOST, port, f"/v2/models/{model.name}/infer", body, headers), headers))
    return out


def http_factory(
    model: BenchModel, port: int, input_name: str, binary: bool, reference: list[dict[str, np.ndarray]]
) -> Callable[[], HttpCaller]:
    """Check sample 0's answer against ``reference``, then return the worker factory.
    Raises :class:`CheckError`."""
    reqs = [r for r, _ in http_requests(model, port, input_name, binary)]
    conn = Connection(HOST, port)
    try:
        for i in (0, 1):
            r = conn.send(reqs[i])
            if r.status != 200:
                raise CheckError(f"HTTP {r.status}: {r.body[:300]!r}")
            compare(decode_http(r.body, r.headers), reference[i])
    except (OSError, HttpError, ValueError, KeyError) as exc:
        raise CheckError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
    return lambda: HttpCaller(port, reqs)


def grpc_factory(
    model: BenchModel, address: str, input_name: str, reference: list[dict[str, np.ndarray]]
) -> Callable[[], GrpcCaller]:
    """As :func:`http_factory`, over gRPC. Raises :class:`CheckError`."""
    import grpc

    pb, _ = service_pb()
    reqs = [grpc_request(pb, model.name, input_name, model.sample(i)) for i in range(len(model.samples))]
    probe = GrpcCaller(address, reqs)
    try:
        for i in (0, 1):
            compare(decode_grpc(probe.call_once(reqs[i])), reference[i])
    except (grpc.RpcError, ValueError, KeyError) as exc:
        raise CheckError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        probe.close()
    return lambda: GrpcCaller(address, reqs)


def compare(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Same output names and shapes, values within float tolerance. Raises :class:`CheckError`."""
    if set(got) != set(want):
        raise CheckError(f"outputs {sorted(got)} answered, {sorted(want)} expected")
    for name, w in want.items():
        g = got[name]
        if g.shape != w.shape:
            raise CheckError(f"output {name!r}: shape {list(g.shape)}, expected {list(w.shape)}")
        if not np.allclose(g, w, rtol=1e-4, atol=1e-4):
            raise CheckError(f"output {name!r}: max abs difference {float(np.abs(g - w).max()):.3g}")
