"""The models being served, swapped atomically while requests are in flight.

A request takes a lease on a model (:meth:`ModelRegistry.use`); a swap replaces the model at once
for new requests, and the old adapter is closed when its last lease ends, so no request ever runs
on a closed adapter and none waits for a swap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from agent.contracts.manifest import Manifest
from agent.contracts.state import DEFAULT_MODEL_KEY
from agent.runtimes.base import RuntimeAdapter
from agent.serving.errors import ModelNotFound, NotReady
from agent.serving.limits import body_limit

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LoadedModel:
    """A loaded model ready to serve, under the name and version the desired state gave it."""

    name: str
    version: str
    adapter: RuntimeAdapter
    manifest: Manifest
    key: str = DEFAULT_MODEL_KEY  # the model key it serves under (not an A/B slot)
    _leases: int = field(default=0, repr=False)
    _retired: bool = field(default=False, repr=False)
    # The largest request body its inputs can need (see agent.serving.limits), worked out once.
    body_limit: int | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.body_limit = body_limit(self.manifest.inputs)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class ModelRegistry:
    """Model keys (``default`` for now) → the model serving under each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, LoadedModel] = {}

    def swap(self, key: str, model: LoadedModel | None) -> LoadedModel | None:
        """Serve ``model`` under model key ``key`` (``None`` unloads it) and return the model it replaced.
        The replaced adapter is closed as soon as no request uses it."""
        with self._lock:
            old = self._models.pop(key, None)
            if model is not None:
                model.key = key
                self._models[key] = model
            if old is not None and old is not model:
                old._retired = True
                close_now = old._leases == 0
            else:
                close_now = False
        if old is not None and close_now:
            _close(old)
        return old

    def find(self, name: str, version: str | None = None) -> LoadedModel:
        """The model serving as ``name`` (and ``version``, when given).

        Raises :class:`NotReady` when nothing is loaded, :class:`ModelNotFound` otherwise."""
        with self._lock:
            return self._find(name, version)

    def _find(self, name: str, version: str | None) -> LoadedModel:
        if not self._models:
            raise NotReady("no model is loaded yet")
        named = [m for m in self._models.values() if m.name == name]
        if not named:
            raise ModelNotFound(f"unknown model {name!r} (serving: {', '.join(sorted(self._names()))})")
        if version is None:
            return named[-1]
        for m in named:
            if m.version == version:
                return m
        serving = ", ".join(repr(m.version) for m in named)
        raise ModelNotFound(f"model {name!r} has no version {version!r} (serving {serving})")

    def _names(self) -> list[str]:
        return [m.name for m in self._models.values()]

    def names(self) -> list[str]:
        with self._lock:
            return self._names()

    @contextmanager
    def use(self, name: str, version: str | None = None) -> Iterator[LoadedModel]:
        """Lease the model for one request; the adapter stays open until the lease ends."""
        with self._lock:
            model = self._find(name, version)
            model._leases += 1
        try:
            yield model
        finally:
            with self._lock:
                model._leases -= 1
                close_now = model._retired and model._leases == 0
            if close_now:
                _close(model)

    def models(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())

    def get(self, key: str) -> LoadedModel | None:
        with self._lock:
            return self._models.get(key)

    def ready(self) -> bool:
        with self._lock:
            return bool(self._models)

    def close(self) -> None:
        """Unload everything (at shutdown)."""
        with self._lock:
            keys = list(self._models)
        for key in keys:
            self.swap(key, None)


def _close(model: LoadedModel) -> None:
    try:
        model.adapter.close()
    except Exception:  # a failing close must not take the swap down with it
        log.exception("closing %s failed", model.ref)
    else:
        log.info("unloaded %s", model.ref)
