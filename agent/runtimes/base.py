"""The one interface every runtime adapter implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from agent.contracts.manifest import Manifest

if TYPE_CHECKING:  # importing agent.runtimes stays light (the fleet server hashes files with it)
    import numpy as np


class RuntimeUnavailable(RuntimeError):
    """The runtime's library is not installed or has no device to run on here. Report it; the
    message says what is missing (e.g. ``tensorrt is not installed``)."""


class RuntimeLoadError(RuntimeError):
    """The runtime refused the model (corrupt file, unsupported op, wrong engine). Report it."""


class RuntimeAdapter(ABC):
    """A loaded model. Construct with :meth:`load`; call :meth:`infer`; :meth:`close` when done.

    ``infer`` takes and returns tensors named, shaped and typed as the *source* model's
    (``manifest.inputs`` / ``manifest.outputs``); the adapter applies each tensor's ``transpose``
    and ``quantization`` from the manifest on the way in and out, so clients never see the
    compiled model's layout.
    """

    name: ClassVar[str]
    # Whether ``load``'s ``threads`` changes how the model runs (CPU runtimes); a runtime on an
    # accelerator ignores it, and the agent does not time it with other counts (agent.runtimes.fit).
    uses_threads: ClassVar[bool] = True

    def __init__(self, bundle_dir: Path, manifest: Manifest) -> None:
        self.bundle_dir = bundle_dir
        self.manifest = manifest

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` when this runtime can run here, else one line saying what is missing."""

    @classmethod
    @abstractmethod
    def version(cls) -> str | None:
        """The installed runtime library's version, or ``None`` when it is not installed."""

    @classmethod
    @abstractmethod
    def load(
        cls, bundle_dir: Path, manifest: Manifest, threads: int | None = None, spinning: bool | None = None
    ) -> RuntimeAdapter:
        """Load ``manifest.entrypoint`` from ``bundle_dir`` with ``threads`` intra-op threads and,
        where the runtime has the choice, its threads spinning between runs (``spinning``) or
        only while a run goes on; ``None`` leaves either to the runtime.

        Raises :class:`RuntimeUnavailable` or :class:`RuntimeLoadError`.
        """

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. Raises ``ValueError`` for a missing input or a wrong shape/dtype."""

    def close(self) -> None:  # noqa: B027 - optional hook; most runtimes free on GC
        """Release the model's memory."""
