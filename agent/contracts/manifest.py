"""The bundle manifest: what a compiled bundle holds and how to run it.

A bundle is a directory (or a tar of one) with ``manifest.json`` beside the files it lists. The
compilers write it, the server stores and signs it, the agent verifies and loads it. Everything a
device needs to run the model without the source ONNX is here: the tensors in the *source*
model's layout and how they map onto the compiled model's (transpose, quantization), the hash and
size of every file, the validation figures against FP32, and the samples for the self-test.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.contracts._fields import check, obj, opt, req, schema
from agent.contracts.errors import ContractError
from agent.contracts.names import PRECISIONS, TARGETS

MANIFEST_SCHEMA = "edgefleet.manifest/1"
MANIFEST_NAME = "manifest.json"

FILE_ROLES = ("model", "samples", "build-spec", "calibration-cache", "extra")


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor the compiled model takes or gives: ``q = round(x / scale + zp)``."""

    scale: float
    zero_point: int
    dtype: str  # "int8" or "uint8"

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Quantization:
        d = obj(data, where)
        return cls(
            scale=req(d, "scale", float, where),
            zero_point=req(d, "zero_point", int, where),
            dtype=req(d, "dtype", str, where),
        )


@dataclass(frozen=True)
class TensorSpec:
    """One input or output.

    ``name``, ``dtype`` and ``shape`` describe the tensor as the *source* ONNX model has it, which
    is what clients send and receive. ``model_name``/``model_shape`` are the compiled model's own;
    ``transpose`` is the permutation that turns the source layout into the compiled one (``None``
    when they agree), and ``quantization`` is set when the compiled model takes or gives integers.
    A dimension of ``-1`` is dynamic (usually the batch).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    layout: str | None = None
    model_name: str | None = None
    model_shape: tuple[int, ...] | None = None
    transpose: tuple[int, ...] | None = None
    quantization: Quantization | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TensorSpec:
        d = obj(data, where)
        shape = tuple(check(x, int, f"{where}.shape") for x in req(d, "shape", list, where))
        model_shape = opt(d, "model_shape", list, where)
        transpose = opt(d, "transpose", list, where)
        quant = d.get("quantization")
        return cls(
            name=req(d, "name", str, where),
            dtype=req(d, "dtype", str, where),
            shape=shape,
            layout=opt(d, "layout", str, where),
            model_name=opt(d, "model_name", str, where),
            model_shape=None if model_shape is None else tuple(int(x) for x in model_shape),
            transpose=None if transpose is None else tuple(int(x) for x in transpose),
            quantization=None if quant is None else Quantization.from_dict(quant, f"{where}.quantization"),
        )


@dataclass(frozen=True)
class FileEntry:
    """A file of the bundle, relative to the bundle's root, with its sha256 and size in bytes."""

    path: str
    sha256: str
    size: int
    role: str = "model"

    @classmethod
    def from_dict(cls, data: Any, where: str) -> FileEntry:
        d = obj(data, where)
        entry = cls(
            path=req(d, "path", str, where),
            sha256=req(d, "sha256", str, where),
            size=req(d, "size", int, where),
            role=opt(d, "role", str, where, "model"),
        )
        p = Path(entry.path)
        if p.is_absolute() or ".." in p.parts or entry.path in ("", MANIFEST_NAME):
            raise ContractError(f"{where}.path: {entry.path!r} must be a relative path inside the bundle")
        if len(entry.sha256) != 64 or any(c not in "0123456789abcdef" for c in entry.sha256):
            raise ContractError(f"{where}.sha256: not a lowercase hex sha256")
        if entry.size < 0:
            raise ContractError(f"{where}.size: negative")
        if entry.role not in FILE_ROLES:
            raise ContractError(f"{where}.role: {entry.role!r} is not one of {', '.join(FILE_ROLES)}")
        return entry


def size_ratio(size_bytes: int, fp32_size_bytes: int) -> float:
    """Compiled size over FP32 size (1.0 when the FP32 size is unknown)."""
    return size_bytes / fp32_size_bytes if fp32_size_bytes else 1.0


def latency_ratio(latency_ms: float | None, fp32_latency_ms: float | None) -> float | None:
    """Compiled latency over FP32 latency, ``None`` unless both were measured."""
    if latency_ms is None or not fp32_latency_ms:
        return None
    return latency_ms / fp32_latency_ms


@dataclass(frozen=True)
class Validation:
    """How the compiled model compares with the FP32 source on held-out samples.

    ``top1_agreement`` is the share of samples whose arg-max matches FP32 (``None`` when the
    output is not a classifier's). ``ran`` says whether the compiled model could run on the build
    host at all; when it could not (TensorRT without a GPU), the figures are those of the closest
    stand-in that did run (the QDQ ONNX under ONNX Runtime) and ``checked_with`` names it.
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

    @property
    def size_ratio(self) -> float:
        return size_ratio(self.size_bytes, self.fp32_size_bytes)

    @property
    def latency_ratio(self) -> float | None:
        return latency_ratio(self.latency_ms, self.fp32_latency_ms)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Validation:
        d = obj(data, where)
        return cls(
            samples=req(d, "samples", int, where),
            top1_agreement=opt(d, "top1_agreement", float, where),
            max_abs_error=req(d, "max_abs_error", float, where),
            mean_abs_error=req(d, "mean_abs_error", float, where),
            size_bytes=req(d, "size_bytes", int, where),
            fp32_size_bytes=req(d, "fp32_size_bytes", int, where),
            latency_ms=opt(d, "latency_ms", float, where),
            fp32_latency_ms=opt(d, "fp32_latency_ms", float, where),
            ran=opt(d, "ran", bool, where, True),
            checked_with=opt(d, "checked_with", str, where),
            min_agreement=opt(d, "min_agreement", float, where),
            accuracy=opt(d, "accuracy", float, where),
            fp32_accuracy=opt(d, "fp32_accuracy", float, where),
            notes=tuple(opt(d, "notes", list, where, [])),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        d["size_ratio"] = round(self.size_ratio, 4)
        d["latency_ratio"] = None if self.latency_ratio is None else round(self.latency_ratio, 4)
        return d


@dataclass(frozen=True)
class SelfTest:
    """Samples the agent runs after loading, before switching: ``file`` is an ``.npz`` with
    ``input:<name>`` and ``output:<name>`` arrays in the source layout. A run passes when every
    output is within ``atol + rtol * |expected|`` and, if ``check_top1``, has the same arg-max."""

    file: str
    samples: int
    atol: float
    rtol: float = 0.0
    check_top1: bool = True

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SelfTest:
        d = obj(data, where)
        return cls(
            file=req(d, "file", str, where),
            samples=req(d, "samples", int, where),
            atol=req(d, "atol", float, where),
            rtol=opt(d, "rtol", float, where, 0.0),
            check_top1=opt(d, "check_top1", bool, where, True),
        )


@dataclass(frozen=True)
class Manifest:
    """The whole manifest. Build it with the constructor, read it with :meth:`from_json`."""

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

    def file(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise ContractError(f"manifest lists no file {path!r}")

    def to_dict(self) -> dict[str, Any]:
        def tensor(t: TensorSpec) -> dict[str, Any]:
            d = asdict(t)
            for k in ("shape", "model_shape", "transpose"):
                if d[k] is not None:
                    d[k] = list(d[k])
            return d

        return {
            "schema": MANIFEST_SCHEMA,
            "name": self.name,
            "version": self.version,
            "target": self.target,
            "precision": self.precision,
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "profile": self.profile,
            "entrypoint": self.entrypoint,
            "source_sha256": self.source_sha256,
            "source_file": self.source_file,
            "inputs": [tensor(t) for t in self.inputs],
            "outputs": [tensor(t) for t in self.outputs],
            "files": [asdict(f) for f in self.files],
            "validation": None if self.validation is None else self.validation.to_dict(),
            "selftest": None if self.selftest is None else asdict(self.selftest),
            "build": self.build,
            "created_at": self.created_at,
            "compiler_version": self.compiler_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse and check a manifest. Raises :class:`ContractError` naming the first bad field."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError(f"manifest is not JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        w = "manifest"
        d = obj(data, w)
        schema(d, MANIFEST_SCHEMA, w)
        target = req(d, "target", str, w)
        if target not in TARGETS:
            raise ContractError(f"{w}.target: {target!r} is not one of {', '.join(TARGETS.names())}")
        precision = req(d, "precision", str, w)
        if precision not in PRECISIONS:
            raise ContractError(f"{w}.precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
        files = tuple(
            FileEntry.from_dict(f, f"{w}.files[{i}]") for i, f in enumerate(req(d, "files", list, w))
        )
        paths = [f.path for f in files]
        if len(set(paths)) != len(paths):
            raise ContractError(f"{w}.files: a path is listed twice")
        entry = req(d, "entrypoint", str, w)
        if entry not in paths:
            raise ContractError(f"{w}.entrypoint: {entry!r} is not among the listed files")
        val = d.get("validation")
        st = d.get("selftest")
        m = cls(
            target=target,
            precision=precision,
            runtime=req(d, "runtime", str, w),
            runtime_version=req(d, "runtime_version", str, w),
            entrypoint=entry,
            source_sha256=req(d, "source_sha256", str, w),
            inputs=tuple(
                TensorSpec.from_dict(t, f"{w}.inputs[{i}]") for i, t in enumerate(req(d, "inputs", list, w))
            ),
            outputs=tuple(
                TensorSpec.from_dict(t, f"{w}.outputs[{i}]") for i, t in enumerate(req(d, "outputs", list, w))
            ),
            files=files,
            validation=None if val is None else Validation.from_dict(val, f"{w}.validation"),
            selftest=None if st is None else SelfTest.from_dict(st, f"{w}.selftest"),
            source_file=opt(d, "source_file", str, w),
            profile=opt(d, "profile", str, w),
            name=opt(d, "name", str, w),
            version=opt(d, "version", str, w),
            build=opt(d, "build", dict, w, {}),
            created_at=opt(d, "created_at", str, w),
            compiler_version=opt(d, "compiler_version", str, w),
        )
        if m.selftest is not None and m.selftest.file not in paths:
            raise ContractError(f"{w}.selftest.file: {m.selftest.file!r} is not among the listed files")
        if not m.inputs or not m.outputs:
            raise ContractError(f"{w}: a model needs at least one input and one output")
        return m


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
