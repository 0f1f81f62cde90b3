"""The bundle manifest: what a compiled bundle holds and how to run it.

A bundle is a directory (or a tar of one) with ``manifest.json`` beside the files it lists. The
compilers write it, the server stores and signs it, the agent verifies and loads it. Everything a
device needs to run the model without the source ONNX is here: the tensors in the *source*
model's layout and how they map onto the compiled model's (transpose, quantization), the hash and
size of every file, the validation figures against FP32, and the samples for the self-test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar

from agent.contracts.codec import Contract, encode_fields
from agent.contracts.errors import ContractError
from agent.contracts.names import PRECISIONS, TARGETS

MANIFEST_SCHEMA = "edgefleet.manifest/1"
MANIFEST_NAME = "manifest.json"

FILE_ROLES = ("model", "samples", "build-spec", "calibration-cache", "extra")


@dataclass(frozen=True)
class Quantization(Contract):
    """Affine quantization of a tensor the compiled model takes or gives: ``q = round(x / scale + zp)``."""

    scale: float
    zero_point: int
    dtype: str  # "int8" or "uint8"


@dataclass(frozen=True)
class TensorSpec(Contract):
    """One input or output.

    ``name``, ``dtype`` and ``shape`` describe the tensor as the *source* ONNX model has it, which
    is what clients send and receive. ``model_name``/``model_shape`` are the compiled model's own;
    ``transpose`` is the permutation that turns the source layout into the compiled one (``None``
    when they agree), and ``quantization`` is set when the compiled model takes or gives integers.
    A dimension of ``-1`` is dynamic (usually the batch). An output with ``echo_of`` is that
    input passed through unchanged (sentence-transformers exports return their ``input_ids``):
    the compiled model has no such output, and the runtime gives the input back.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    layout: str | None = None
    model_name: str | None = None
    model_shape: tuple[int, ...] | None = None
    transpose: tuple[int, ...] | None = None
    quantization: Quantization | None = None
    echo_of: str | None = None


@dataclass(frozen=True)
class FileEntry(Contract):
    """A file of the bundle, relative to the bundle's root, with its sha256 and size in bytes."""

    path: str
    sha256: str
    size: int
    role: str = "model"

    def check(self, where: str) -> None:
        p = PurePosixPath(self.path)
        if p.is_absolute() or ".." in p.parts or self.path in ("", MANIFEST_NAME):
            raise ContractError(f"{where}.path: {self.path!r} must be a relative path inside the bundle")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ContractError(f"{where}.sha256: not a lowercase hex sha256")
        if self.size < 0:
            raise ContractError(f"{where}.size: negative")
        if self.role not in FILE_ROLES:
            raise ContractError(f"{where}.role: {self.role!r} is not one of {', '.join(FILE_ROLES)}")


def size_ratio(size_bytes: int, fp32_size_bytes: int) -> float:
    """Compiled size over FP32 size (1.0 when the FP32 size is unknown)."""
    return size_bytes / fp32_size_bytes if fp32_size_bytes else 1.0


def latency_ratio(latency_ms: float | None, fp32_latency_ms: float | None) -> float | None:
    """Compiled latency over FP32 latency, ``None`` unless both were measured."""
    if latency_ms is None or not fp32_latency_ms:
        return None
    return latency_ms / fp32_latency_ms


@dataclass(frozen=True)
class OutputMetric(Contract):
    """One output's figure against FP32: ``metric`` is ``top1``, ``cosine``, ``sqnr`` (dB),
    ``relerr``, ``exact`` or a user's ``module:function``; ``passed`` is whether ``value`` met
    ``threshold`` (at least it, or at most it when ``higher_is_better`` is false)."""

    output: str
    metric: str
    value: float
    threshold: float
    passed: bool
    higher_is_better: bool = True


@dataclass(frozen=True)
class MixedPrecision(Contract):
    """Layers kept in float in an otherwise INT8 bundle, and what that cost: ``float_nodes``
    names the source model's nodes (after quantization pre-processing), ``ranked_by`` how their
    quantization cost was measured; ``int8_size_bytes``/``int8_latency_ms`` are those of the
    all-INT8 attempt that failed its gate (latency ``None`` when not measured)."""

    float_nodes: tuple[str, ...]
    quantizable_nodes: int
    attempts: int
    ranked_by: str
    float_precision: str = "fp32"
    int8_size_bytes: int | None = None
    int8_latency_ms: float | None = None


@dataclass(frozen=True)
class Validation(Contract):
    """How the compiled model compares with the FP32 source on held-out samples.

    ``top1_agreement`` is the share of samples whose arg-max matches FP32 (``None`` when the
    output is not a classifier's). ``ran`` says whether the compiled model could run on the build
    host at all; when it could not (TensorRT without a GPU), the figures are those of the closest
    stand-in that did run (the QDQ ONNX under ONNX Runtime) and ``checked_with`` names it.
    ``size_ratio`` and ``latency_ratio`` are written for readers' convenience and ignored on reading.
    ``metrics`` holds every output's gate figure, ``calibration_method`` the INT8 calibration
    that was used, ``mixed`` the layers kept in float; manifests written before these fields read
    with their defaults.
    """

    samples: int
    top1_agreement: float | None
    max_abs_error: float
    mean_abs_error: float
    size_bytes: int
    fp32_size_bytes: int
    latency_ms: float | None = None
    fp32_latency_ms: float | None = None
    ran: bool = True
    checked_with: str | None = None
    min_agreement: float | None = None
    accuracy: float | None = None  # against labels, when the held-out set has them
    fp32_accuracy: float | None = None
    notes: tuple[str, ...] = ()
    metrics: tuple[OutputMetric, ...] = ()  # every output's figure; empty in older manifests
    calibration_method: str | None = None
    mixed: MixedPrecision | None = None
    precision_choice: str | None = None  # with --precision auto: what was chosen and why

    @property
    def size_ratio(self) -> float:
        return size_ratio(self.size_bytes, self.fp32_size_bytes)

    @property
    def latency_ratio(self) -> float | None:
        return latency_ratio(self.latency_ms, self.fp32_latency_ms)

    def to_dict(self) -> dict[str, Any]:
        d = encode_fields(self)
        d["size_ratio"] = round(self.size_ratio, 4)
        d["latency_ratio"] = None if self.latency_ratio is None else round(self.latency_ratio, 4)
        return d


@dataclass(frozen=True)
class SelfTest(Contract):
    """Samples the agent runs after loading, before switching: ``file`` is an ``.npz`` with
    ``input:<name>`` and ``output:<name>`` arrays in the source layout. A run passes when every
    output is within ``atol + rtol * |expected|`` and, if ``check_top1``, has the same arg-max."""

    file: str
    samples: int
    atol: float
    rtol: float = 0.0
    check_top1: bool = True


@dataclass(frozen=True)
class Intake(Contract):
    """How the compiler normalised the source model before the target converted it.

    ``steps`` are one line each, in order (``"opset 11 → 17"``, ``"input x: [?,3,?,?] →
    [?,3,48,192] (batch kept dynamic)"``, ``"simplified (onnxsim 0.8.1): 120 → 96 nodes"``).
    ``source_opset``/``opset`` are the default-domain opsets before and after; ``input_shapes``
    the shapes the target compiled for (``-1``: left dynamic); ``simplifier`` what folded and
    simplified the graph (``None``: nothing did); ``external_data`` whether the normalised model
    kept its weights in a separate file.
    """

    steps: tuple[str, ...] = ()
    source_opset: int | None = None
    opset: int | None = None
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    simplifier: str | None = None
    external_data: bool = False


@dataclass(frozen=True)
class Manifest(Contract):
    """The whole manifest. Build it with the constructor, read it with :meth:`from_json`.

    ``target`` and ``runtime`` must be registered (:mod:`agent.contracts.names`), built-in or
    plug-in; the runtime is checked by whoever loads the bundle, which is where it must exist.
    """

    WHERE: ClassVar[str] = "manifest"
    SCHEMA: ClassVar[str | None] = MANIFEST_SCHEMA

    target: str
    precision: str
    runtime: str
    runtime_version: str
    entrypoint: str
    source_sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: tuple[FileEntry, ...]
    validation: Validation | None = None
    selftest: SelfTest | None = None
    source_file: str | None = None
    profile: str | None = None
    name: str | None = None
    version: str | None = None
    build: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    compiler_version: str | None = None
    intake: Intake | None = None  # absent in manifests written before the intake step

    def file(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise ContractError(f"manifest lists no file {path!r}")

    def to_json(self) -> str:  # type: ignore[override]  # a file people read: indented text
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def check(self, w: str) -> None:
        if self.target not in TARGETS:
            raise ContractError(f"{w}.target: {self.target!r} is not one of {', '.join(TARGETS.names())}")
        if self.precision not in PRECISIONS:
            raise ContractError(f"{w}.precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ContractError(f"{w}.files: a path is listed twice")
        if self.entrypoint not in paths:
            raise ContractError(f"{w}.entrypoint: {self.entrypoint!r} is not among the listed files")
        if self.selftest is not None and self.selftest.file not in paths:
            raise ContractError(f"{w}.selftest.file: {self.selftest.file!r} is not among the listed files")
        if not self.inputs or not self.outputs:
            raise ContractError(f"{w}: a model needs at least one input and one output")
        names = {t.name for t in self.inputs}
        for i, t in enumerate(self.outputs):
            if t.echo_of is not None and t.echo_of not in names:
                raise ContractError(f"{w}.outputs[{i}].echo_of: {t.echo_of!r} is not an input")
        if all(t.echo_of is not None for t in self.outputs):
            raise ContractError(f"{w}: every output echoes an input; the model computes nothing")


def file_problems(manifest: Manifest, actual: dict[str, tuple[int, str] | None]) -> list[str]:
    """Compare the manifest's file list with what is on disk (pure).

    ``actual`` maps each listed path to ``(size, sha256)``, or ``None`` when the file is missing.
    Returns one line per problem; an empty list means every file matches.
    """
    problems = []
    for f in manifest.files:
        got = actual.get(f.path)
        if got is None:
            problems.append(f"{f.path}: missing")
            continue
        size, digest = got
        if size != f.size:
            problems.append(f"{f.path}: size {size} != {f.size} in the manifest")
        elif digest != f.sha256:
            problems.append(f"{f.path}: sha256 {digest[:12]}… != {f.sha256[:12]}… in the manifest")
    return problems
