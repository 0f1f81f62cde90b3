"""The I/O shell that drives the update state machine.

Each step does one thing, posts its event to :mod:`agent.update.machine`, and the resulting state
is written to the journal *before* the next side effect; every journal write is also reported (a
:class:`~agent.contracts.state.ReportedState` through the ``report`` callback, plus throttled
progress during downloads). Any failure leaves the previous model serving: the new model is
installed into the inactive slot, loaded and self-tested beside the serving one, and the swap is
the last step.

Only the ``default`` model key is served for now; the key travels through every call so that
several models, each under its own key, can each get a reconciler later. (A model key is not an
A/B slot: the slots are the two directories each update alternates between.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from agent.contracts.manifest import Manifest
from agent.contracts.state import (
    DEFAULT_MODEL_KEY,
    ERROR_MESSAGE_MAX,
    DesiredModel,
    DesiredState,
    ErrorCode,
    ReportedError,
    ReportedState,
    UpdateState,
    truncate,
)
from agent.errors import ArtifactError, Cancelled, DeviceError, StorageError, TransportError, UpdateError
from agent.facts import runtime_problems
from agent.runtimes.base import RuntimeAdapter, RuntimeLoadError, RuntimeUnavailable
from agent.runtimes.fit import fit_threads
from agent.runtimes.registry import load_bundle
from agent.serving.models import LoadedModel, ModelRegistry
from agent.update.download import Downloader, Progress
from agent.update.journal import InstalledModel, Journal, JournalStore
from agent.update.machine import (
    MAX_RESUMES,
    RESUME_ENTRY,
    RESUME_TABLE,
    Event,
    Resume,
    counts_as_resume,
    is_at_rest,
    next_state,
    resume_action,
)
from agent.update.plan import Action, decide
from agent.update.selftest import probe_inputs, run_selftest
from agent.update.slots import Installed, SlotStore
from agent.update.verify import Sha256Verifier, Verifier

log = logging.getLogger(__name__)


class BundleSource(Protocol):
    """Where bundles come from: :class:`~agent.update.download.Downloader` (plain, for tests of
    the update machinery) or :class:`agent.trust.TufSource` (signed; what the daemon uses)."""

    def fetch(
        self, model: DesiredModel, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> Path: ...
    def done_path(self, model: DesiredModel) -> Path: ...
    def partial_size(self, model: DesiredModel) -> int: ...
    def discard(self, model: DesiredModel) -> None: ...
    def cleanup(self, keep: set[str] | frozenset[str] = frozenset()) -> None: ...
    def check_bundle(self, model: DesiredModel, bundle_dir: Path) -> None: ...


ReportFn = Callable[[ReportedState], None]
Loader = Callable[..., RuntimeAdapter]
S = UpdateState

# The code a crash in each state is reported with, when the journal shows it at start-up.
_CRASH_CODES = {
    S.DOWNLOADING: ErrorCode.DOWNLOAD_FAILED,
    S.LOADING: ErrorCode.LOAD_FAILED,
    S.SELF_TEST: ErrorCode.SELF_TEST_FAILED,
}


def _bounded(error: ReportedError | None) -> ReportedError | None:
    """``error`` with its message cut to what the server stores whole (a runtime library's
    message can be a page of text)."""
    if error is None or len(error.message) <= ERROR_MESSAGE_MAX:
        return error
    return ReportedError(error.code, truncate(error.message))


class Outcome(StrEnum):
    APPLIED = "APPLIED"  # the generation is applied (installed, already active, or unloaded)
    FAILED = "FAILED"  # refused or failed for good: the generation is recorded as failed
    RETRY = "RETRY"  # failed in a way a later attempt may fix (network)
    CANCELLED = "CANCELLED"  # a newer desired state took over
    IGNORED = "IGNORED"  # nothing to do


class Reconciler:
    """Brings the device to a desired state, one update at a time (callers serialise calls).

    ``target`` and ``runtime`` are the profile's compile target and runtime; ``runtime_problems``
    says which runtimes can run here; ``loader`` loads a verified bundle (``agent.runtimes.load_bundle``).
    """

    def __init__(
        self,
        *,
        device_id: str,
        target: str,
        runtime: str,
        data_dir: Path,
        registry: ModelRegistry,
        downloader: Downloader | BundleSource,
        report: ReportFn,
        verifier: Verifier | None = None,
        runtimes: Callable[[], Mapping[str, str | None]] = runtime_problems,
        loader: Loader = load_bundle,
        threads: int | None = None,
        spinning: bool | None = None,
        fit_threads: bool = False,
        inference_url: str | None = None,
        model_key: str = DEFAULT_MODEL_KEY,
        progress_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_id = device_id
        self.target = target
        self.runtime = runtime
        self.registry = registry
        self.downloader = downloader
        self.verifier: Verifier = verifier or Sha256Verifier()
        self.inference_url = inference_url
        self.model_key = model_key
        self.slots = SlotStore(data_dir / "slots")
        self._store = JournalStore(data_dir / "journal.json")
        self._journal = self._store.load()
        self._report_fn = report
        self._runtimes = runtimes
        self._loader = loader
        self._threads = threads
        self._spinning = spinning
        self._fit_threads = fit_threads
        self._progress_interval = progress_interval
        self._clock = clock
        self._last_progress = 0.0
        # Set by the worker at shutdown: a download cancelled for that stays DOWNLOADING in the
        # journal, so the next start resumes it at once instead of waiting for the desired state.
        self.shutting_down = threading.Event()
        # Set by the daemon at start-up from agent.update.clean_stop.
        self.clean_stop = False

    def tune(self, threads: int | None, spinning: bool | None, fit_threads: bool = False) -> None:
        """Runtime threads and spinning for the models loaded from now on; with ``fit_threads``,
        ``threads`` is the most a model gets (see :mod:`agent.runtimes.fit`)."""
        self._threads, self._spinning, self._fit_threads = threads, spinning, fit_threads

    @property
    def journal(self) -> Journal:
        return self._journal

    def reported(self, progress: dict[str, int] | None = None) -> ReportedState:
        """The report for the journal as it stands."""
        j = self._journal
        return ReportedState(
            device_id=self.device_id,
            generation=j.generation,
            state=j.state,
            active=None if j.active is None else j.active.ref,
            previous=None if j.previous is None else j.previous.ref,
            error=_bounded(j.error),
            progress=progress,
            inference_url=self.inference_url,
            seq=j.writes,
            recovery=j.recovery,
        )

    # -- start-up ---------------------------------------------------------------------------

    def restore(self) -> LoadedModel | None:
        """Load the active slot's model and serve it (at start-up, before any update runs).

        When the active slot won't load but the previous one does, the previous becomes active.
        Returns the model now serving, or ``None``.
        """
        j = self._journal
        for record in (j.active, j.previous):
            if record is None or record.slot == j.target_slot:
                continue
            try:
                model = self._load_installed(record, self.slots.verify(record.slot))
            except UpdateError as exc:
                log.error("installed model %s (slot %s) can't be served: %s", record.ref, record.slot, exc)
                continue
            if record is not j.active:
                err = ReportedError(
                    str(ErrorCode.LOAD_FAILED),
                    f"{j.active.ref if j.active else '?'} failed to load at start-up; serving {record.ref}",
                )
                self._save(active=record, previous=None, error=err)
            self.registry.swap(self.model_key, model)
            log.info("serving %s from slot %s", record.ref, record.slot)
            return model
        return None

    def resume(self, cancel: threading.Event | None = None) -> Outcome:
        """Go on with an update the journal shows in flight, as the resume table says
        (``self.clean_stop``: the agent's last stop was orderly)."""
        try:
            return self._resume(cancel)
        except StorageError as exc:
            return self._unrecorded(self._journal.generation, exc)

    def _resume(self, cancel: threading.Event | None) -> Outcome:
        j = self._journal
        action = resume_action(j.state, j.resumes, clean_stop=self.clean_stop)
        if action is Resume.SERVE_ACTIVE:
            self._clean_downloads()
            return Outcome.IGNORED
        model = j.desired
        if model is None:
            action = Resume.ROLL_BACK
        log.warning("journal shows %s for generation %d at start-up: %s", j.state, j.generation, action)
        cause = "an orderly stop" if self.clean_stop else "a crash"
        if action is Resume.ROLL_BACK:
            # Nothing was installed or loaded during a download, so a roll back from there says
            # nothing against the generation: the partial download stays and it is tried again.
            retryable = j.state is S.DOWNLOADING
            code = str(_CRASH_CODES.get(j.state, ErrorCode.INTERNAL))
            recovery = j.recovery
            if j.state is S.ROLLING_BACK and j.error:
                error = j.error
            elif model is not None and counts_as_resume(RESUME_TABLE[j.state]):
                stops = "stops" if self.clean_stop else "crashes"
                recovery = (
                    f"rolled back after {j.resumes + 1} {stops} during this update, the last at {j.state}"
                )
                error = ReportedError(code, recovery)
            else:
                error = ReportedError(
                    code, f"the agent stopped during {j.state} (after {j.resumes} resumes); rolled back"
                )
            self._save(state=S.ROLLING_BACK, error=error, resumes=j.resumes + 1, recovery=recovery)
            return self._finish_rollback(retryable=retryable)
        assert model is not None
        recovery = j.recovery
        resumes = j.resumes
        if counts_as_resume(action):
            resumes += 1
            recovery = f"resumed after {cause} at {j.state} ({resumes} of {MAX_RESUMES})"
            log.warning("generation %d: %s", j.generation, recovery)
        self._save(state=RESUME_ENTRY[action], resumes=resumes, recovery=recovery, error=None)
        return self._run(model, self._journal.generation, cancel)

    def _clean_downloads(self) -> None:
        """With no update in flight, delete the downloads no update will need: all but the
        journal's model after a retryable failure (IDLE, its generation not failed, not the
        model serving), which the next delivery of that generation resumes. A kill between the
        commit and the cleanup after it leaves the tar behind; this is where it goes."""
        j = self._journal
        keep: set[str] = set()
        if (
            j.state is S.IDLE
            and j.desired is not None
            and j.generation not in j.failed_generations
            and (j.active is None or j.active.sha256 != j.desired.sha256)
        ):
            keep.add(j.desired.sha256)
        try:
            self.downloader.cleanup(keep)
        except OSError as exc:  # a later update's cleanup tries again
            log.warning("could not clean up old downloads: %s", exc)

    # -- updates ----------------------------------------------------------------------------

    def apply(self, desired: DesiredState, cancel: threading.Event | None = None) -> Outcome:
        """Reconcile towards ``desired``; blocks until the update ends. Never raises for a failed
        update (the failure is reported). When the journal itself can't be written (a full or
        read-only data directory) the failure is reported without being recorded and the outcome
        is ``RETRY``."""
        try:
            if not is_at_rest(self._journal.state):
                # A journal write failed in the middle of an update: go on from the journal as a
                # restart would, then towards ``desired``.
                self._resume(cancel)
            return self._apply(desired, cancel)
        except StorageError as exc:
            return self._unrecorded(desired.generation, exc)

    def _unrecorded(self, generation: int, exc: StorageError) -> Outcome:
        """Report a failure the journal could not record. The journal (in memory as on disk) is
        the last one written, the model it names serves on, and the worker tries again later."""
        log.error("generation %d: %s; the update waits until it can be written", generation, exc)
        report = replace(
            self.reported(),
            generation=generation,
            state=S.IDLE,
            error=_bounded(ReportedError(str(exc.code), str(exc))),
            progress=None,
        )
        try:
            self._report_fn(report)
        except Exception:
            log.exception("reporting the update state failed")
        return Outcome.RETRY

    def _apply(self, desired: DesiredState, cancel: threading.Event | None) -> Outcome:
        j = self._journal
        plan = decide(
            desired,
            device_id=self.device_id,
            target=self.target,
            runtime=self.runtime,
            runtime_problems=self._runtimes(),
            journal=j,
        )
        if plan.action is Action.ALREADY_ACTIVE and self.registry.get(self.model_key) is None:
            plan = replace(plan, action=Action.UPDATE, reason="installed but not serving: install again")
        log.info("desired generation %d: %s (%s)", desired.generation, plan.action, plan.reason)
        gen = desired.generation
        if plan.action is Action.IGNORE:
            # Say where we stand anyway: a server that re-sends a desired state after losing its
            # broker subscription learns our state from the answer.
            self._report()
            return Outcome.IGNORED
        if plan.action is Action.REFUSE:
            assert plan.code is not None
            self._event(
                Event.REFUSED,
                generation=gen,
                desired=plan.model,
                error=ReportedError(str(plan.code), plan.reason),
                failed_generations=j.failed(gen),
                recovery=None,
            )
            return Outcome.FAILED
        if plan.action is Action.UNLOAD:
            self._event(
                Event.UNLOADED,
                report=False,
                generation=gen,
                desired=None,
                active=None,
                previous=j.active,
                applied_generation=gen,
                error=None,
                recovery=None,
            )
            self.registry.swap(self.model_key, None)
            self._report()  # after the swap, so whoever reads COMMITTED finds it done
            return Outcome.APPLIED
        assert plan.model is not None
        if plan.action is Action.ALREADY_ACTIVE:
            self._event(
                Event.ALREADY_ACTIVE,
                generation=gen,
                desired=plan.model,
                applied_generation=gen,
                error=None,
                recovery=None,
            )
            return Outcome.APPLIED
        self._event(
            Event.START,
            generation=gen,
            desired=plan.model,
            target_slot=None,
            downloaded=self.downloader.partial_size(plan.model),
            resumes=0,
            recovery=None,
            error=None,
        )
        return self._run(plan.model, gen, cancel)

    def _run(self, model: DesiredModel, gen: int, cancel: threading.Event | None) -> Outcome:
        """Run the update from the journal's state (DOWNLOADING or VERIFYING) to the end."""
        adapter: RuntimeAdapter | None = None
        try:
            if self._journal.state is S.DOWNLOADING:
                self._last_progress = self._clock()
                path = self.downloader.fetch(model, progress=self._on_progress, cancel=cancel)
                self._event(Event.DOWNLOADED, downloaded=model.size)
            else:
                path = self.downloader.done_path(model)
                if not path.is_file():
                    raise TransportError(
                        f"{model.ref}: the downloaded bundle is gone; it will be fetched again"
                    )
            self.verifier.verify(path, model)

            j = self._journal
            slot = self.slots.inactive(j.active.slot if j.active else None)
            keep_previous = j.previous if j.previous is not None and j.previous.slot != slot else None
            self._event(Event.VERIFIED, target_slot=slot, previous=keep_previous)
            installed = self.slots.install(path, slot)
            self._check_manifest(installed.manifest, model)
            self.downloader.check_bundle(model, installed.bundle_dir)

            self._event(Event.INSTALLED)
            adapter = self._load(installed)

            self._event(Event.LOADED)
            log.info("%s: %s", model.ref, run_selftest(adapter, installed.bundle_dir, installed.manifest))

            new = LoadedModel(model.name, model.version, adapter, installed.manifest)
            self._event(
                Event.SELF_TEST_PASSED,
                report=False,
                active=InstalledModel.from_desired(model, slot),
                previous=self._journal.active,
                applied_generation=gen,
                target_slot=None,
                downloaded=0,
                resumes=0,
                error=None,
            )
            adapter = None  # the registry owns it now
            self.registry.swap(self.model_key, new)
            self._report()  # after the swap, so whoever reads COMMITTED finds the new model serving
            self.downloader.cleanup()
            log.info("generation %d committed: serving %s from slot %s", gen, model.ref, slot)
            return Outcome.APPLIED
        except Cancelled:
            if self.shutting_down.is_set():
                log.info("download of %s interrupted by shutdown; it resumes at the next start", model.ref)
                return Outcome.CANCELLED
            log.info("update to %s cancelled by a newer desired state", model.ref)
            self._event(Event.CANCELLED, error=None)
            return Outcome.CANCELLED
        except UpdateError as exc:
            return self._fail(exc)
        except StorageError:
            raise
        except Exception as exc:  # a bug or an unexpected library error: still roll back, never crash
            log.exception("update to %s failed unexpectedly", model.ref)
            return self._fail(UpdateError(f"internal error: {type(exc).__name__}: {exc}", ErrorCode.INTERNAL))
        finally:
            if adapter is not None:
                adapter.close()

    def _fail(self, exc: UpdateError) -> Outcome:
        j = self._journal
        log.error("update of generation %d failed: %s: %s", j.generation, exc.code, exc.message)
        err = ReportedError(str(exc.code), exc.message)
        if j.state is S.DOWNLOADING:
            # Only the journal's DOWNLOADING refers to the part file, and a resume from there
            # fetches it again: it goes first, which also frees the room a full disk needs for
            # the journal write.
            if not exc.retryable and j.desired is not None:
                self.downloader.discard(j.desired)
            failed = j.failed_generations if exc.retryable else j.failed(j.generation)
            self._event(Event.FAILED, error=err, failed_generations=failed)
            return Outcome.RETRY if exc.retryable else Outcome.FAILED
        # Past the download the complete bundle stays until ROLLING_BACK is in the journal (the
        # roll back discards it): a kill between the two would otherwise leave a journal that
        # resumes from verification with the bundle gone.
        self._event(Event.FAILED, error=err)
        return self._finish_rollback(exc.retryable)

    def _finish_rollback(self, retryable: bool) -> Outcome:
        """From ROLLING_BACK: empty the slot the update was installing into; back to IDLE."""
        j = self._journal
        if j.target_slot is not None and (j.active is None or j.target_slot != j.active.slot):
            self.slots.clear(j.target_slot)
        if not retryable and j.desired is not None:
            self.downloader.discard(j.desired)
        failed = j.failed_generations if retryable else j.failed(j.generation)
        self._event(Event.ROLLED_BACK, target_slot=None, downloaded=0, failed_generations=failed)
        return Outcome.RETRY if retryable else Outcome.FAILED

    # -- steps ------------------------------------------------------------------------------

    def _check_manifest(self, manifest: Manifest, model: DesiredModel) -> None:
        if manifest.target != self.target:
            raise ArtifactError(
                f"{model.ref}: the bundle is built for {manifest.target}; this device runs {self.target}",
                ErrorCode.INCOMPATIBLE,
            )
        if manifest.name and (manifest.name, manifest.version) != (model.name, model.version):
            raise ArtifactError(
                f"the bundle's manifest names {manifest.name}:{manifest.version}, "
                f"the desired state {model.ref}",
                ErrorCode.TARGET_MISMATCH,
            )

    def _load(self, installed: Installed) -> RuntimeAdapter:
        """Load with the bundle's runtime, translating the runtimes' errors at this seam."""
        m = installed.manifest
        threads, spinning = self._threads, self._spinning
        try:
            adapter = self._loader(installed.bundle_dir, m, threads=threads, spinning=spinning)
            if self._fit_threads and threads is not None and threads > 1:
                adapter, _ = fit_threads(
                    adapter,
                    threads,
                    lambda n: self._loader(installed.bundle_dir, m, threads=n, spinning=spinning),
                    probe_inputs(installed.bundle_dir, m),
                    label=f"{m.name}:{m.version}" if m.name else m.entrypoint,
                )
            return adapter
        except RuntimeUnavailable as exc:
            raise DeviceError(f"runtime {m.runtime}: {exc}", ErrorCode.RUNTIME_UNAVAILABLE) from exc
        except RuntimeLoadError as exc:
            raise DeviceError(f"{m.runtime} refused the model: {exc}", ErrorCode.LOAD_FAILED) from exc
        except LookupError as exc:  # PluginError: a runtime this agent does not know
            raise ArtifactError(
                f"the bundle needs runtime {m.runtime!r}: {exc}", ErrorCode.INCOMPATIBLE
            ) from exc
        except Exception as exc:  # a runtime library's own exception type
            raise DeviceError(f"{m.runtime} failed to load the model: {exc}", ErrorCode.LOAD_FAILED) from exc

    def _load_installed(self, record: InstalledModel, installed: Installed) -> LoadedModel:
        adapter = self._load(installed)
        return LoadedModel(record.name, record.version, adapter, installed.manifest)

    def _on_progress(self, done: int, total: int) -> None:
        now = self._clock()
        if now - self._last_progress < self._progress_interval and done < total:
            return
        self._last_progress = now
        try:
            self._journal = self._store.save(replace(self._journal, downloaded=done))
        except OSError as exc:
            raise StorageError.from_os_error(exc, f"the journal {self._store.path}") from exc
        self._report(progress={"bytes": done, "total": total})

    # -- journal ----------------------------------------------------------------------------

    def _event(self, event: Event, report: bool = True, **changes: Any) -> None:
        """Post ``event``: persist the next state with ``changes``, then report it (unless the
        caller reports after one more in-memory step)."""
        state = next_state(self._journal.state, event)
        self._save(report=report, state=state, **changes)

    def _save(self, report: bool = True, **changes: Any) -> None:
        """Persist the journal with ``changes``. Raises :class:`StorageError` when it can't be
        written; the journal in memory is then still the one on disk."""
        try:
            self._journal = self._store.save(replace(self._journal, **changes))
        except OSError as exc:
            raise StorageError.from_os_error(exc, f"the journal {self._store.path}") from exc
        if report:
            self._report()

    def _report(self, progress: dict[str, int] | None = None) -> None:
        try:
            self._report_fn(self.reported(progress))
        except Exception:  # reporting is best effort; the journal is the record
            log.exception("reporting the update state failed")
