"""Which models the cloud endpoint has loaded, loading a fleet model version on first use.

A request names a model (and usually a version) as the device serves it; the endpoint runs the
*source* ONNX of that version (FP32, the reference every bundle was validated against) with ONNX
Runtime, preferring the CUDA execution provider. ``onnxruntime`` is imported on the first load,
never at server start-up. At most ``max_models`` stay loaded; the least recently used goes first
(its in-flight requests finish on it: the registry's leases keep it open).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.contracts.manifest import FileEntry, Manifest, TensorSpec
from agent.serving.errors import ModelNotFound, ServingError
from agent.serving.models import LoadedModel, ModelRegistry
from fleet_server.db import ModelVersion
from fleet_server.store import ArtifactStore

log = logging.getLogger(__name__)


class CloudLoadError(ServingError):
    """The model version exists but could not be loaded here (a server-side fault)."""

    status = 500
    outcome = "error"


def _spec(t: dict[str, Any]) -> TensorSpec:
    return TensorSpec(str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t["shape"]))


class CloudModels:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        cache_dir: Path,
        registry: ModelRegistry,
        max_models: int = 4,
        threads: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.cache_dir = cache_dir
        self.registry = registry
        self.max_models = max_models
        self.threads = threads
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, None] = OrderedDict()

    def resolve(self, name: str, version: str | None) -> tuple[str, str]:
        """The ``(name, version)`` to serve; without a version, the newest one pushed.
        Raises :class:`ModelNotFound`."""
        with self.sessions() as s:
            q = select(ModelVersion).where(ModelVersion.name == name)
            if version:
                q = q.where(ModelVersion.version == version)
            mv = s.scalars(q.order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())).first()
            if mv is None:
                what = f"{name}:{version}" if version else name
                raise ModelNotFound(f"unknown model {what!r} on the cloud endpoint")
            return mv.name, mv.version

    def ensure(self, name: str, version: str | None) -> str:
        """Load ``name:version`` unless it is loaded; returns the version served.
        Raises :class:`ModelNotFound` or :class:`CloudLoadError`."""
        name, version = self.resolve(name, version)
        key = f"{name}:{version}"
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return version
            model = self._load(name, version)
            self.registry.swap(key, model)
            self._loaded[key] = None
            while len(self._loaded) > self.max_models:
                old, _ = self._loaded.popitem(last=False)
                self.registry.swap(old, None)
                log.info("cloud endpoint unloaded %s (least recently used)", old)
            return version

    def _load(self, name: str, version: str) -> LoadedModel:
        from agent.runtimes import onnxrt  # heavy: only when a model is first asked for

        with self.sessions() as s:
            mv = s.scalars(
                select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
            ).one()
            sha, key, size = mv.sha256, mv.source_key, mv.size
            inputs, outputs = tuple(_spec(t) for t in mv.inputs), tuple(_spec(t) for t in mv.outputs)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"{sha}.onnx"
        if not path.is_file() or path.stat().st_size != size:
            part = path.with_suffix(".part")
            with self.store.open(key) as src, part.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            part.replace(path)
        manifest = Manifest(
            target="onnx-x86",
            precision="fp32",
            runtime="onnxruntime",
            runtime_version=onnxrt.OnnxRuntimeAdapter.version() or "",
            entrypoint=path.name,
            source_sha256=sha,
            inputs=inputs,
            outputs=outputs,
            files=(FileEntry(path.name, sha, size, "model"),),
            name=name,
            version=version,
        )
        try:
            adapter = onnxrt.OnnxRuntimeAdapter.load(self.cache_dir, manifest, threads=self.threads)
        except (onnxrt.RuntimeLoadError, onnxrt.RuntimeUnavailable) as exc:
            raise CloudLoadError(f"the cloud endpoint can't load {name}:{version}: {exc}") from exc
        log.info("cloud endpoint loaded %s:%s on %s", name, version, ", ".join(onnxrt.providers()))
        return LoadedModel(name, version, adapter, manifest)
