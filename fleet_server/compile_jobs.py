"""Compile jobs: a small pool of worker threads that turns ``pending`` bundles into stored tars, off
the request path.

A bundle row is one compile of a model version for one (target, precision, settings key); the
unique key in the database makes sure it is compiled once however many deployments need it. A
worker claims a row by moving it from ``pending`` to ``compiling`` in one conditional UPDATE, so
a bundle submitted twice (or seen by two replicas) runs once. A compile that was running when the
server stopped is put back to ``pending`` at the next start.

``compilers`` (and with it ONNX Runtime, TensorFlow for tflite) is imported inside the worker, on
the first compile, never at server start-up.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.bundle_tar import bundle_target_path, sha256_of, write_bundle_tar
from fleet_server.db import Bundle, ModelVersion, utcnow
from fleet_server.limits import FIELD_LIMITS, truncate
from fleet_server.metrics import Metrics
from fleet_server.states import BundleStatus
from fleet_server.store import ArtifactStore

log = logging.getLogger(__name__)


class CompileRequest:
    """What one compile needs, read from the database before the long part starts."""

    def __init__(self, bundle: Bundle, mv: ModelVersion) -> None:
        self.bundle_id = bundle.id
        self.target = bundle.target
        self.precision = bundle.precision
        self.profile = bundle.profile
        self.settings_key = bundle.settings_key
        self.name = mv.name
        self.version = mv.version
        self.source_key = mv.source_key
        self.calibration_key = mv.calibration_key
        self.validation_key = mv.validation_key
        self.min_agreement = mv.min_agreement


class CompileFailed(Exception):
    """A compile that failed for a reason to show the operator (already prefixed with the target)."""


CompileFn = Callable[[Path, str, Path, dict[str, Any], Callable[[str], None]], None]
# Signs a stored bundle tar into the TUF repository: (target path, tar, model, version, target,
# build key). Called before the bundle turns ready, so no desired state names an unsigned one.
SignFn = Callable[[str, Path, str, str, str, str], None]


def run_compiler(
    source: Path, profile: str, out_dir: Path, options: dict[str, Any], progress: Callable[[str], None]
) -> None:
    """Run :func:`compilers.compile_model`; a :class:`compilers.CompileError` becomes
    :class:`CompileFailed` with its one-line message. Imports the compilers lazily."""
    try:
        from compilers import CompileError, CompileOptions, compile_model
    except ImportError as exc:
        raise CompileFailed(f"the compilers are not installed on the server ({exc})") from exc
    try:
        compile_model(source, profile, out_dir, CompileOptions(**options), progress)
    except CompileError as exc:
        raise CompileFailed(
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        ) from exc


class CompileWorker:
    """Runs compiles on ``workers`` daemon threads. ``on_done(bundle_id)`` is called after each
    compile ends (ready or failed), from the worker thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        work_dir: Path,
        workers: int = 1,
        metrics: Metrics | None = None,
        on_done: Callable[[int], None] | None = None,
        compile_fn: CompileFn = run_compiler,
        sign: SignFn | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._work_dir = work_dir
        self._workers = workers
        self._metrics = metrics
        self._on_done = on_done
        self._compile_fn = compile_fn
        self._sign = sign
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._inflight: set[int] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Put compiles a previous run left half-done back to ``pending``, and start the threads.
        Pending bundles are submitted by the rollout controller's next pass."""
        self._work_dir.mkdir(parents=True, exist_ok=True)
        with self._sessions.begin() as s:
            s.execute(
                update(Bundle)
                .where(Bundle.status == BundleStatus.COMPILING.value)
                .values(status=BundleStatus.PENDING.value, started_at=None)
            )
        for i in range(self._workers):
            t = threading.Thread(target=self._loop, name=f"compile-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop taking work. A compile still running is abandoned (daemon thread) and will be
        redone after the next start."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def submit(self, bundle_id: int) -> bool:
        """Queue a compile unless it is queued or running already. True when queued now."""
        with self._lock:
            if bundle_id in self._inflight:
                return False
            self._inflight.add(bundle_id)
        self._queue.put(bundle_id)
        return True

    def busy(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _loop(self) -> None:
        while (bundle_id := self._queue.get()) is not None:
            try:
                self.run_one(bundle_id)
            except Exception:
                log.exception("compile of bundle %s crashed", bundle_id)
            finally:
                with self._lock:
                    self._inflight.discard(bundle_id)
                if self._on_done is not None:
                    try:
                        self._on_done(bundle_id)
                    except Exception:
                        log.exception("compile callback failed")

    def _claim(self, bundle_id: int) -> CompileRequest | None:
        with self._sessions.begin() as s:
            res = s.execute(
                update(Bundle)
                .where(Bundle.id == bundle_id, Bundle.status == BundleStatus.PENDING.value)
                .values(status=BundleStatus.COMPILING.value, started_at=utcnow(), error=None)
            )
            if getattr(res, "rowcount", 0) != 1:
                return None
            bundle = s.get(Bundle, bundle_id)
            assert bundle is not None
            return CompileRequest(bundle, bundle.model_version)

    def run_one(self, bundle_id: int) -> None:
        """Compile one bundle now, in this thread, if it is still ``pending``."""
        req = self._claim(bundle_id)
        if req is None:
            return
        log.info(
            "compiling %s:%s for %s/%s (%s)", req.name, req.version, req.target, req.precision, req.profile
        )
        started = time.monotonic()
        work = self._work_dir / f"bundle-{bundle_id}-{uuid.uuid4().hex[:8]}"
        status = BundleStatus.FAILED
        try:
            result = self._compile(req, work)
            status = BundleStatus.READY
        except CompileFailed as exc:
            self._finish(bundle_id, error=f"{req.target}: {exc}")
            log.warning("compile of bundle %s failed: %s: %s", bundle_id, req.target, exc)
        except Exception as exc:
            log.exception("compile of bundle %s crashed", bundle_id)
            self._finish(bundle_id, error=f"{req.target}: internal error: {type(exc).__name__}: {exc}")
        else:
            self._finish(bundle_id, result=result)
            log.info("bundle %s ready: %s", bundle_id, result["target_path"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if self._metrics is not None:
                self._metrics.compile_seconds.labels(req.target, status.value).observe(
                    time.monotonic() - started
                )

    def _fetch(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._store.open(key) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        return dest

    def _compile(self, req: CompileRequest, work: Path) -> dict[str, Any]:
        src_dir = work / "src"
        source = self._fetch(req.source_key, src_dir / "model.onnx")
        options: dict[str, Any] = {"precision": req.precision, "name": req.name, "version": req.version}
        if req.calibration_key:
            options["calibration"] = self._fetch(
                req.calibration_key, src_dir / f"calibration{PurePosixPath(req.calibration_key).suffix}"
            )
        if req.validation_key:
            options["validation"] = self._fetch(
                req.validation_key, src_dir / f"validation{PurePosixPath(req.validation_key).suffix}"
            )
        if req.min_agreement is not None:
            options["min_agreement"] = req.min_agreement
        out_dir = work / "bundle"

        def progress(msg: str) -> None:
            log.debug("bundle %s: %s", req.bundle_id, msg)

        local_names = {str(source): req.source_key}
        for opt, key in (("calibration", req.calibration_key), ("validation", req.validation_key)):
            if key:
                local_names[str(options[opt])] = key
        try:
            self._compile_fn(source, req.profile, out_dir, options, progress)
        except CompileFailed as exc:
            # Name the uploaded files by their store keys, not by this worker's temp paths.
            msg = str(exc)
            for local, key in local_names.items():
                msg = msg.replace(local, key)
            raise CompileFailed(msg) from exc
        try:
            manifest = json.loads((out_dir / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise CompileFailed(f"the compiler wrote no readable manifest.json ({exc})") from exc
        tar = work / "bundle.tar"
        write_bundle_tar(out_dir, tar)
        sha = sha256_of(tar)
        target_path = bundle_target_path(req.name, req.version, req.target, req.precision, sha)
        info = self._store.put_file(target_path, tar)
        if self._sign is not None:
            self._sign(target_path, tar, req.name, req.version, req.target, req.settings_key)
        return {"target_path": target_path, "size": info.size, "sha256": sha, "manifest": manifest}

    def _finish(
        self, bundle_id: int, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        with self._sessions.begin() as s:
            bundle = s.get(Bundle, bundle_id)
            if bundle is None:
                return
            bundle.finished_at = utcnow()
            if result is not None:
                bundle.status = BundleStatus.READY.value
                bundle.error = None
                bundle.target_path = result["target_path"]
                bundle.size = result["size"]
                bundle.sha256 = result["sha256"]
                bundle.manifest = result["manifest"]
            else:
                bundle.status = BundleStatus.FAILED.value
                # A compiler's message can be a whole log; its first lines say what went wrong.
                bundle.error = None if error is None else truncate(error, FIELD_LIMITS.error_message_chars)
