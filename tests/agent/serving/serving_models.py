"""A model with two outputs for the serving tests (asking for a subset of outputs needs one):
``logits = input @ W + b`` and ``scaled = 2 * logits``, built and bundled for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.contracts.manifest import Manifest
from agent.runtimes.base import RuntimeAdapter
from tests.agent.agent_testkit import BuiltBundle, desired_model, make_bundle, tar_bundle
from tests.agent.conftest import SAMPLES

PAIR = "pair"


def make_pair_onnx(path: Path, scale: float = 1.0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    w = (rng.standard_normal((4, 3)) * scale).astype(np.float32)
    b = np.arange(3, dtype=np.float32)
    two = np.array(2.0, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["logits"]),
            helper.make_node("Mul", ["logits", "two"], ["scaled"]),
        ],
        "pair",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["batch", 3]),
        ],
        initializer=[
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(b, "B"),
            numpy_helper.from_array(two, "two"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def pair_bundle(root: Path, version: str = "1") -> BuiltBundle:
    """The two-output model as a bundle (directory and tar) named ``pair``."""
    root.mkdir(parents=True, exist_ok=True)
    onnx_path = make_pair_onnx(root / f"pair-{version}.onnx")
    d = make_bundle(root / f"pair-bundle-{version}", onnx_path, PAIR, version, SAMPLES)
    tar = tar_bundle(d, root / f"pair-{version}.tar")
    return BuiltBundle(PAIR, version, d, tar, desired_model(tar, PAIR, version), onnx_path)


class Wrapped(RuntimeAdapter):
    """A loaded adapter wrapped so a test can change how it behaves (slower, held at a gate)
    while the real runtime still computes the answers."""

    name = "wrapped"

    def __init__(self, inner: RuntimeAdapter) -> None:
        super().__init__(inner.bundle_dir, inner.manifest)
        self.inner = inner

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def version(cls) -> str | None:
        return "1"

    @classmethod
    def load(
        cls, bundle_dir: Path, manifest: Manifest, threads: int | None = None, spinning: bool | None = None
    ) -> RuntimeAdapter:
        raise NotImplementedError("made from a loaded adapter in these tests")

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner.infer(inputs)
