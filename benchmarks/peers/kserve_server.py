"""KServe's Python model server around an ONNX Runtime session, bound to one loopback address.

Run by ``serving_bench.py`` with the kserve venv's Python:

    python kserve_server.py --model PATH --name NAME --host 127.0.0.1 --http-port P --grpc-port Q \
        --ort-options JSON

The model class is the shape KServe's docs give for a custom predictor (``load`` opens the
session, a synchronous ``predict`` runs it). KServe binds ``0.0.0.0`` and ``[::]`` with no option
to change it, so the two bind calls are wrapped to use ``--host``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ort_options import build

DATATYPES = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32", "uint8": "UINT8"}


def bind_to(host: str) -> None:
    """Make KServe's REST (uvicorn) and gRPC servers bind ``host`` instead of every address."""
    import kserve.protocol.grpc.server as grpc_server

    config_init = uvicorn.Config.__init__

    def local_config(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["host"] = host
        config_init(self, *args, **kwargs)

    uvicorn.Config.__init__ = local_config  # type: ignore[method-assign]
    make_server = grpc_server.aio.server

    class _Aio:
        @staticmethod
        def server(*args: Any, **kwargs: Any) -> Any:
            server = make_server(*args, **kwargs)
            add = server.add_insecure_port
            server.add_insecure_port = lambda addr: add(addr.replace("[::]", host))
            return server

    grpc_server.aio = _Aio  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--grpc-port", type=int, required=True)
    ap.add_argument("--ort-options", required=True)
    args = ap.parse_args()

    bind_to(args.host)
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

    class OnnxModel(Model):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.session: Any = None
            self.output_names: list[str] = []
            self.load()

        def load(self) -> bool:
            self.session = ort.InferenceSession(
                args.model, build(args.ort_options), providers=["CPUExecutionProvider"]
            )
            self.output_names = [o.name for o in self.session.get_outputs()]
            self.ready = True
            return self.ready

        def predict(
            self, payload: InferRequest, headers: Any = None, response_headers: Any = None
        ) -> InferResponse:
            feed = {i.name: i.as_numpy() for i in payload.inputs}
            values = self.session.run(self.output_names, feed)
            outputs = []
            for name, v in zip(self.output_names, values, strict=True):
                out = InferOutput(name=name, shape=list(v.shape), datatype=DATATYPES[v.dtype.name])
                out.set_data_from_numpy(v, binary_data=payload.use_binary_outputs)
                outputs.append(out)
            return InferResponse(
                response_id=payload.id or "0",
                model_name=self.name,
                infer_outputs=outputs,
                use_binary_outputs=payload.use_binary_outputs,
            )

    server = ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_latency_logging=False,
        enable_docs_url=False,
    )
    # A log line per request is a cost the agent doesn't pay (it has no access log).
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).disabled = True
    server.start([OnnxModel(args.name)])


if __name__ == "__main__":
    main()
