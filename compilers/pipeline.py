"""The compile pipeline: ONNX model + device profile (+ calibration data) → a verified bundle.

Steps, in order (each failure is a one-line :class:`~compilers.errors.CompileError` and leaves no
output directory):

1. load and check the ONNX model; describe its inputs and outputs;
2. resolve the profile, its target and the precision;
3. read calibration and validation samples; normalise the model once (:mod:`compilers.intake`:
   opset, shapes, folding); the target checks the ops; decide which samples validate;
4. in a staging directory beside ``out_dir``, the target writes its model files;
5. validate against FP32 (agreement, errors, accuracy, latency) and apply the gate;
6. pre-flight fit check, self-test samples, manifest; verify the bundle; rename it into place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from agent.contracts.manifest import FileEntry, Intake, Manifest, SelfTest, TensorSpec, Validation
from agent.runtimes import RuntimeLoadError, sha256_file
from compilers import intake
from compilers.base import CompileJob, Target, TargetOutput
from compilers.bundle import check_destination, discard, file_entries, make_staging, publish, write_manifest
from compilers.calibration import SampleSet, load_samples
from compilers.errors import CompileError, TargetError, ToolchainError
from compilers.hostcpu import host_arch, host_has_vnni
from compilers.modelcheck import input_specs, load_model, model_info, one_line
from compilers.options import CompileOptions
from compilers.preflight import FitResult, check_fit, estimate_memory
from compilers.registry import get_target
from compilers.report import CompileReport
from compilers.selftest import write_selftest
from compilers.validate import (
    Comparison,
    SamplePlan,
    compare,
    compiled_adapter,
    gate,
    measure_latency,
    plan_samples,
    run_all,
    source_adapter,
)
from device_profiles import DeviceProfile, ProfileError, load_profile

__all__ = ["CompileOptions", "CompileReport", "compile_model"]

Progress = Callable[[str], None]


def compile_model(
    source: Path,
    profile: str | DeviceProfile,
    out_dir: Path,
    options: CompileOptions | None = None,
    progress: Progress | None = None,
) -> CompileReport:
    """Compile ``source`` for ``profile`` into the bundle directory ``out_dir``.

    Returns the :class:`CompileReport`. Raises a :class:`~compilers.errors.CompileError` subclass
    with a one-line reason (``ModelError``, ``TargetError``, ``UnsupportedOpError``,
    ``CalibrationError``, ``ToolchainError``, ``ValidationGateError``); then nothing exists at
    ``out_dir`` (or, with ``force``, the old bundle is still there).
    """
    opts = options or CompileOptions()
    say: Progress = progress or (lambda _msg: None)
    source, out_dir = Path(source), Path(out_dir)
    opts.check()

    say(f"checking {source}")
    model = load_model(source)
    inputs = input_specs(model, source)
    prof = resolve_profile(profile, opts)
    target = get_target(prof.target)
    check_runtime(target, prof)
    precision = choose_precision(target, prof, opts)
    say(f"profile {prof.name}: target {target.name}, precision {precision}")
    check_destination(out_dir, opts.force)

    calibration = _read(opts.calibration, inputs, "calibration data", say)
    validation = _read(opts.validation, inputs, "validation data", say)
    with intake.workdir() as work:
        shaped = calibration if calibration is not None else validation
        samples = {k: tuple(v.shape) for k, v in shaped.inputs.items()} if shaped else {}
        normal = intake.for_compile(model, source, work, target, precision, opts, samples, say)
        model, inputs, outputs = normal.model, normal.inputs, normal.outputs
        target.check_ops(model)
        plan = plan_samples(calibration, validation, inputs, opts.max_validation, opts.seed)
        req = _Request(
            source,
            sha256_file(source),
            model,
            prof,
            target,
            precision,
            inputs,
            outputs,
            plan,
            opts,
            say,
            normal.path,
            normal.record,
            normal.reference,
        )

        staging = make_staging(out_dir)
        try:
            return _build(req, staging, out_dir)
        except BaseException:
            discard(staging)
            raise


def resolve_profile(profile: str | DeviceProfile, options: CompileOptions) -> DeviceProfile:
    """The profile object for a name or path. Raises :class:`TargetError` (one line, naming the
    known profiles for an unknown name, or the file and field for a bad one)."""
    if isinstance(profile, DeviceProfile):
        return profile
    try:
        return load_profile(profile, list(options.profiles_dirs) or None)
    except ProfileError as exc:
        raise TargetError(one_line(exc, 400)) from exc


def check_runtime(target: Target, profile: DeviceProfile) -> None:
    """Raise :class:`TargetError` when the profile's runtime is not the one the target builds for
    (the profile loader pins built-in targets; this catches a plug-in target's profiles)."""
    if profile.runtime.name != target.runtime:
        raise TargetError(
            f"profile {profile.name}: target {target.name} builds for runtime {target.runtime!r}, "
            f"the profile names {profile.runtime.name!r}"
        )


def choose_precision(target: Target, profile: DeviceProfile, options: CompileOptions) -> str:
    """``options.precision`` or the profile's; raises :class:`TargetError` when the target can't make it."""
    precision = options.precision or profile.precision
    if precision not in target.precisions:
        makes = ", ".join(target.precisions)
        raise TargetError(f"target {target.name} can't produce precision {precision!r} (it makes {makes})")
    return precision


def _read(path: Path | None, inputs: tuple[TensorSpec, ...], what: str, say: Progress) -> SampleSet | None:
    if path is None:
        return None
    samples = load_samples(Path(path), inputs, what)
    say(f"{what}: {len(samples)} samples from {path}")
    return samples


@dataclass(frozen=True)
class _Request:
    """Everything decided before a file is written: the checked model, where it goes, which
    samples calibrate and validate, and the options."""

    source: Path
    source_sha: str
    model: onnx.ModelProto
    profile: DeviceProfile
    target: Target
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    plan: SamplePlan
    opts: CompileOptions
    say: Progress
    model_path: Path | None = None  # the normalised model the target converts (default: source)
    intake: Intake | None = None
    reference: Path | None = None  # the FP32 model validation compares with (default: source)

    def job(self) -> CompileJob:
        cal = self.plan.calibration
        return CompileJob(
            source_path=self.model_path or self.source,
            profile=self.profile,
            precision=self.precision,
            calibration=None if cal is None else cal.inputs,
            inputs=self.inputs,
            outputs=self.outputs,
            options={"max_batch": self.opts.max_batch, "threads": self.opts.threads},
            progress=self.say,
        )


@dataclass(frozen=True)
class _Checked:
    """What validation found."""

    comparison: Comparison
    compiled_outputs: dict[str, np.ndarray]
    ran: bool
    checked_with: str | None
    latency_ms: float | None
    fp32_latency_ms: float | None


def _build(req: _Request, staging: Path, out_dir: Path) -> CompileReport:
    req.say(f"compiling for {req.target.name} ({req.precision})")
    out = _run_target(req.target, req.job(), staging)
    files = file_entries(staging, out.files)

    checked = _validate(req, staging, _manifest(req, out, files), out)
    gate(checked.comparison, req.opts.min_agreement)

    size = sum(f.size for f in files if f.role == "model")
    memory = estimate_memory(req.model, size, req.target.runtime)
    fit = check_fit(req.profile, memory, checked.latency_ms, _latency_unmeasurable(req, checked.ran))
    notes = (*req.plan.notes, *out.notes, *_host_notes(req, checked))

    selftest = None
    if req.opts.samples > 0:
        cls = checked.comparison.classifier_output
        expected = checked.compiled_outputs
        selftest = write_selftest(staging, req.plan.validation.inputs, expected, req.opts.samples, cls)
        files = (*files, *file_entries(staging, {selftest.file: "samples"}))
    validation = _validation_record(req, checked, size, notes)
    build = {**out.build, "source": model_info(req.model), "preflight": fit.to_dict(), "host": _host()}
    req.say(f"writing the bundle to {out_dir}")
    manifest = write_manifest(staging, _manifest(req, out, files, validation, selftest, build))
    publish(staging, out_dir, req.opts.force)
    return _report(req, out_dir, manifest, validation, checked, fit)


def _run_target(target: Target, job: CompileJob, staging: Path) -> TargetOutput:
    try:
        return target.compile(job, staging)
    except CompileError:
        raise
    except Exception as exc:  # a converter's own exception: translated once, here
        raise ToolchainError(f"target {target.name} failed: {type(exc).__name__}: {one_line(exc)}") from exc


def _validate(req: _Request, staging: Path, draft: Manifest, out: TargetOutput) -> _Checked:
    samples, opts = req.plan.validation, req.opts
    req.say(f"validating against FP32 on {len(samples)} samples")
    try:
        fp32 = source_adapter(req.reference or req.source, req.inputs, req.outputs, opts.threads)
    except RuntimeLoadError as exc:
        raise ToolchainError(
            f"the FP32 source does not run under ONNX Runtime here: {one_line(exc)}"
        ) from exc
    run = compiled_adapter(staging, draft, out.runnable_here, out.stand_in, opts.threads)
    try:
        reference = run_all(fp32, samples, req.inputs)
        with _as_toolchain_error("the compiled model failed on the validation samples"):
            got = run_all(run.adapter, samples, req.inputs)
        latency = fp32_latency = None
        if run.ran and opts.latency_runs > 0:
            req.say(f"timing {opts.latency_runs} single-sample runs of FP32 and {req.precision}")
            with _as_toolchain_error("timing the compiled model failed"):
                fp32_latency, latency = measure_latency(
                    fp32, run.adapter, samples, req.inputs, opts.latency_runs
                )
    finally:
        fp32.close()
        run.adapter.close()
    return _Checked(
        comparison=compare(reference, got, req.outputs, samples.labels),
        compiled_outputs=got,
        ran=run.ran,
        checked_with=run.checked_with,
        latency_ms=latency,
        fp32_latency_ms=fp32_latency,
    )


@contextlib.contextmanager
def _as_toolchain_error(what: str) -> Iterator[None]:
    """The adapters' ``ValueError`` (a model that runs but fails on real inputs) as a one-line
    :class:`ToolchainError` saying ``what`` failed."""
    try:
        yield
    except ValueError as exc:
        raise ToolchainError(f"{what}: {one_line(exc)}") from exc


def _latency_unmeasurable(req: _Request, ran: bool) -> str | None:
    if req.opts.latency_runs == 0:
        return "latency not measured (latency_runs=0)"
    if not ran:
        return "the bundle's runtime does not run on this host"
    if host_arch() != req.profile.cpu.arch:
        return f"this host is {host_arch()}, the device is {req.profile.cpu.arch}"
    return None


def _host_notes(req: _Request, checked: _Checked) -> tuple[str, ...]:
    notes = []
    vnni = host_has_vnni()
    if checked.ran is False and checked.checked_with:
        notes.append(f"validated with a stand-in: {checked.checked_with}")
    if req.precision == "int8" and checked.latency_ms is not None and checked.fp32_latency_ms:
        ratio = checked.latency_ms / checked.fp32_latency_ms
        if ratio > 1.0:
            has = {True: "has", False: "has no", None: "may or may not have"}[vnni]
            notes.append(
                f"INT8 ran {ratio:.2f}x slower than FP32 on this build host, whose CPU {has} VNNI "
                "(avx512_vnni/avx_vnni); without VNNI INT8 kernels gain little on x86"
            )
        if vnni is False and req.profile.has_vnni:
            notes.append(
                f"this host has no VNNI but {req.profile.name} does: expect INT8 to do better on the device"
            )
    return tuple(notes)


def _validation_record(req: _Request, checked: _Checked, size: int, notes: tuple[str, ...]) -> Validation:
    c = checked.comparison
    return Validation(
        samples=c.samples,
        top1_agreement=c.top1_agreement,
        max_abs_error=c.max_abs_error,
        mean_abs_error=c.mean_abs_error,
        size_bytes=size,
        fp32_size_bytes=req.source.stat().st_size,
        latency_ms=checked.latency_ms,
        fp32_latency_ms=checked.fp32_latency_ms,
        ran=checked.ran,
        checked_with=checked.checked_with,
        min_agreement=req.opts.min_agreement if c.top1_agreement is not None else None,
        accuracy=c.accuracy,
        fp32_accuracy=c.fp32_accuracy,
        notes=notes,
    )


def _host() -> dict[str, Any]:
    return {"arch": host_arch(), "vnni": host_has_vnni()}


def compiler_version() -> str:
    """The installed edgefleet's version (the agent's when run from an uninstalled tree)."""
    try:
        return package_version("edgefleet")
    except PackageNotFoundError:
        import agent  # the package's own version string only, not its modules

        return agent.__version__


def _manifest(
    req: _Request,
    out: TargetOutput,
    files: tuple[FileEntry, ...],
    validation: Validation | None = None,
    selftest: SelfTest | None = None,
    build: dict[str, Any] | None = None,
) -> Manifest:
    return Manifest(
        target=req.target.name,
        precision=req.precision,
        runtime=req.target.runtime,
        runtime_version=out.runtime_version,
        entrypoint=out.entrypoint,
        source_sha256=req.source_sha,
        inputs=out.inputs,
        outputs=out.outputs,
        files=files,
        validation=validation,
        selftest=selftest,
        source_file=req.source.name,
        profile=req.profile.name,
        name=req.opts.name,
        version=req.opts.version,
        build=build if build is not None else dict(out.build),
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        compiler_version=compiler_version(),
        intake=req.intake,
    )


def _report(
    req: _Request, out_dir: Path, manifest: Manifest, v: Validation, checked: _Checked, fit: FitResult
) -> CompileReport:
    return CompileReport(
        profile=req.profile.name,
        target=req.target.name,
        precision=req.precision,
        out_dir=out_dir,
        manifest=manifest,
        size_bytes=v.size_bytes,
        fp32_size_bytes=v.fp32_size_bytes,
        validation_samples=v.samples,
        top1_agreement=v.top1_agreement,
        max_abs_error=v.max_abs_error,
        mean_abs_error=v.mean_abs_error,
        accuracy=v.accuracy,
        fp32_accuracy=v.fp32_accuracy,
        latency_ms=v.latency_ms,
        fp32_latency_ms=v.fp32_latency_ms,
        checked_with=v.checked_with,
        host_vnni=host_has_vnni(),
        fit=fit,
        notes=v.notes,
        intake_steps=() if req.intake is None else req.intake.steps,
        strategy=manifest.build.get("strategy"),
    )
