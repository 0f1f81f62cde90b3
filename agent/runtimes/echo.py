"""Outputs that echo an input (``TensorSpec.echo_of``): the compiled model has no such output
(onnx2tf drops a graph output that only passes an input through), so the adapter that runs the
model gets the manifest without them and :class:`EchoOutputs` gives the inputs back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent.contracts.manifest import Manifest, TensorSpec
from agent.runtimes.base import RuntimeAdapter

if TYPE_CHECKING:
    import numpy as np


def split_echoes(manifest: Manifest) -> tuple[Manifest, tuple[TensorSpec, ...]]:
    """The manifest the runtime loads (without echo outputs) and the echo outputs (pure)."""
    echoes = tuple(t for t in manifest.outputs if t.echo_of is not None)
    if not echoes:
        return manifest, ()
    return replace(manifest, outputs=tuple(t for t in manifest.outputs if t.echo_of is None)), echoes


class EchoOutputs(RuntimeAdapter):
    """``inner`` (loaded with :func:`split_echoes`'s manifest) plus the echo outputs of
    ``manifest``, in the manifest's order."""

    name = "echo"

    def __init__(self, inner: RuntimeAdapter, manifest: Manifest) -> None:
        super().__init__(inner.bundle_dir, manifest)
        self.inner = inner

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def version(cls) -> str | None:
        return None

    @classmethod
    def load(
        cls, bundle_dir: Path, manifest: Manifest, threads: int | None = None, spinning: bool | None = None
    ) -> RuntimeAdapter:
        raise NotImplementedError("EchoOutputs wraps a loaded adapter (agent.runtimes.load_bundle)")

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        got = self.inner.infer(inputs)
        out: dict[str, np.ndarray] = {}
        for spec in self.manifest.outputs:
            if spec.echo_of is None:
                out[spec.name] = got[spec.name]
            else:
                out[spec.name] = np.array(inputs[spec.echo_of], dtype=np.dtype(spec.dtype))
        return out

    def close(self) -> None:
        self.inner.close()
