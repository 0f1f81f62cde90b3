import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from edgectl.app import Application
from edgectl.extras import needs_extra
from edgectl.options import Output, ProfilesDir
from edgectl.views.compile_report import compile_summary


class Precision(StrEnum):
    INT8 = "int8"
    FP16 = "fp16"
    FP32 = "fp32"
    AUTO = "auto"


class CalibrationMethod(StrEnum):
    MINMAX = "MinMax"
    ENTROPY = "Entropy"
    PERCENTILE = "Percentile"
    DYNAMIC = "Dynamic"


def compile_(
    ctx: typer.Context,
    model: Annotated[
        Path, typer.Argument(metavar="MODEL.onnx", help="The source ONNX model.", exists=True, dir_okay=False)
    ],
    profile: Annotated[
        list[str],
        typer.Option(
            "--profile", "-p", help="A device profile to compile for (repeatable; see `edgectl profiles ls`)."
        ),
    ],
    precision: Annotated[
        Precision | None,
        typer.Option(
            help="Override the profile's precision; auto: the cheapest that passes the gate "
            "(INT8, INT8 with layers in float, FP16, FP32) and is not slower than FP32 here.",
            show_default="the profile's",
        ),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="INT8 calibration samples: .npz keyed by input name, .npy, or an image folder.", exists=True
        ),
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option(
            help="Held-out samples to check against FP32 (labels under `y` add accuracy).", exists=True
        ),
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(
            help="Fail unless the bundle's top-1 agrees with FP32 on at least this share of samples.",
            min=0.0,
            max=1.0,
            show_default="the compiler's",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Where bundles go: OUT itself for one profile, OUT/<profile> for several."
        ),
    ] = Path("bundles"),
    force: Annotated[bool, typer.Option("--force", help="Replace existing output directories.")] = False,
    profiles_dir: ProfilesDir = None,
    output: Output = None,
    input_shape: Annotated[
        list[str] | None,
        typer.Option(
            "--input-shape",
            metavar="NAME=D,D,...",
            help="Compile input NAME for this shape, e.g. x=1,3,48,192 (repeatable); resolves dynamic "
            "dims (a dynamic batch stays dynamic where the target supports one).",
            show_default="the calibration data's shapes",
        ),
    ] = None,
    simplify: Annotated[
        bool, typer.Option(help="Fold constants and simplify the model before converting it.")
    ] = True,
    metric: Annotated[
        str | None,
        typer.Option(
            help="The gate's metric for every output: top1, cosine, sqnr, relerr, exact; OUTPUT=NAME,... "
            "for some outputs; or module:function scoring a batch (fp32_outputs, got_outputs) -> "
            "{output: value} or a float.",
            show_default="chosen per output from its shape",
        ),
    ] = None,
    metric_threshold: Annotated[
        float | None,
        typer.Option(
            help="The --metric's threshold (relerr: at most; the others: at least).", show_default=False
        ),
    ] = None,
    calibration_method: Annotated[
        CalibrationMethod | None,
        typer.Option(
            help="INT8 calibration: MinMax, Entropy or Percentile; Dynamic (onnx-x86, tflite-arm) "
            "quantizes the weights ahead and the activations on each run, and needs no calibration.",
            show_default="the target's default, then the others if the gate fails",
        ),
    ] = None,
    mixed: Annotated[
        bool,
        typer.Option(
            "--mixed/--no-mixed",
            help="When INT8 fails its gate, keep the layers that quantize worst in float and retry; "
            "then, on onnx-x86 and tflite-arm, try dynamic INT8 (--calibration-method Dynamic).",
        ),
    ] = True,
) -> None:
    """Compile an ONNX model into a validated bundle per device profile, on this machine.

    Each bundle is quantized or converted for the profile's target, checked against the FP32
    model (top-1 agreement, error, latency, size) and written with its manifest. A failed compile
    leaves no output directory. Ends with a summary table (or, with -o json, a JSON list of
    compile reports).

    Example

        edgectl compile digits_cnn.onnx --profile x86-64-avx2 --calibration calibration.npz
        edgectl compile model.onnx -p raspberry-pi-5 -p jetson-orin-nano --calibration cal.npz --out bundles
    """
    app = Application.from_context(ctx, output)
    from device_profiles import ProfileError, load_profile

    if metric_threshold is not None and metric is None:
        app.abort("--metric-threshold needs --metric")
    try:
        profiles = [load_profile(name, profiles_dir) for name in dict.fromkeys(profile)]
    except ProfileError as exc:
        app.abort(str(exc))
    with needs_extra(app, "compile"):
        from compilers import CompileError, CompileOptions, compile_model

    chosen: dict[str, Any] = {"min_agreement": min_agreement} if min_agreement is not None else {}
    from compilers.options import parse_input_shape

    try:
        shapes = dict(parse_input_shape(text) for text in input_shape or ())
    except CompileError as exc:
        app.abort(str(exc))
    chosen.update(
        metric=metric,
        metric_threshold=metric_threshold,
        calibration_method=None if calibration_method is None else calibration_method.value,
        mixed=mixed,
    )
    options = CompileOptions(
        precision=None if precision is None else precision.value,
        calibration=calibration,
        validation=validation,
        force=force,
        profiles_dirs=tuple(profiles_dir or ()),
        **chosen,
        input_shapes=shapes,
        simplify=simplify,
    )
    term = app.terminal
    reports: list[Any] = []
    failed: list[str] = []
    for p in profiles:
        out_dir = out / p.name if len(profiles) > 1 else out
        started = time.monotonic()
        with term.status(f"{p.name}: compiling {model.name}") as spinner:

            def progress(message: str, name: str = p.name) -> None:
                spinner(f"{name}: {message}")
                if not term.interactive and not app.json_output:
                    term.info(f"{name}: {message}")

            try:
                reports.append(compile_model(model, p, out_dir, options, progress=progress))
            except (CompileError, ProfileError) as exc:
                failed.append(f"{p.name}: {exc}")
                continue
        if not app.json_output:
            term.success(f"{p.name}: bundle in {out_dir} ({time.monotonic() - started:.1f}s)")

    if reports:
        app.display([r.to_dict() for r in reports], compile_summary)
    if len(failed) == 1 and len(profiles) == 1:
        app.abort(failed[0].partition(": ")[2])
    if failed:
        for line in failed:
            term.info(f"  {line}")
        names = ", ".join(line.partition(":")[0] for line in failed)
        app.abort(f"compile failed for {len(failed)} of {len(profiles)} profiles ({names})")
