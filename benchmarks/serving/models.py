"""The two benchmark models, compiled as the FP32 ``onnx-x86`` bundle a device would get.

- ``digits``: ``examples/digits/digits_cnn.onnx``, inputs from ``heldout.npz``.
- ``mobilenet``: built by ``examples/mobilenet/build.py`` (as ``benchmarks/compile_bench.py``
  gets it: seeded random weights, standard architecture), inputs from its ``calibration.npz``.

Every row serves the bundle's ``model.onnx``: the peers the very file the agent loads.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "x86-64-avx2"
SAMPLES = 8  # requests rotate through this many different inputs, batch 1 each


@dataclass(frozen=True)
class BenchModel:
    name: str
    bundle_dir: Path
    onnx: Path  # the bundle's model file
    input_name: str  # the name the agent serves the input under (the manifest's)
    onnx_input_name: str  # the name in the ONNX graph (what the peers serve)
    samples: np.ndarray  # [SAMPLES, ...] float32; request i sends samples[i % SAMPLES : +1]

    def sample(self, i: int) -> np.ndarray:
        j = i % len(self.samples)
        return np.ascontiguousarray(self.samples[j : j + 1])


def _source(name: str, work: Path) -> tuple[Path, Path | None, np.ndarray]:
    if name == "digits":
        d = ROOT / "examples" / "digits"
        return d / "digits_cnn.onnx", d / "heldout.npz", np.load(d / "heldout.npz")["x"][:SAMPLES]
    out = work / "mobilenet-src"
    # progress to stderr, so that -o json leaves stdout as one JSON document
    subprocess.run(
        [sys.executable, str(ROOT / "examples/mobilenet/build.py"), "--out", str(out)],
        check=True,
        stdout=sys.stderr,
    )
    return out / "mobilenetv2.onnx", None, np.load(out / "calibration.npz")["input"][:SAMPLES]


def prepare(name: str, work: Path) -> BenchModel:
    """Build (mobilenet) and compile ``name`` to an FP32 onnx-x86 bundle under ``work``.
    Raises ``CompileError`` or ``CalledProcessError``."""
    from agent.contracts.manifest import Manifest
    from compilers import CompileOptions, compile_model

    src, validation, samples = _source(name, work)
    out = work / f"bundle-{name}"
    compile_model(
        src,
        PROFILE,
        out,
        CompileOptions(precision="fp32", validation=validation, latency_runs=0, name=name, version="1"),
    )
    manifest = Manifest.from_json((out / "manifest.json").read_text())
    spec = manifest.inputs[0]
    if spec.transpose:  # every row sends the same tensor, so the agent's layout must be the graph's
        raise ValueError(f"{name}: the bundle maps input layout ({spec.transpose}); not benchmarkable here")
    return BenchModel(
        name=name,
        bundle_dir=out,
        onnx=out / manifest.entrypoint,
        input_name=spec.name,
        onnx_input_name=spec.model_name or spec.name,
        samples=np.asarray(samples, dtype=np.dtype(spec.dtype)),
    )
