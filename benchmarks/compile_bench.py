"""Per target: INT8 against FP32 of the *same* runtime, measured side by side in one run.

For each target it compiles the model twice (int8 and fp32 bundles, through the real pipeline),
loads both bundles with the agent's runtime adapters (the code a device runs), and reports:

- size ratio INT8/FP32 (model file bytes),
- latency ratio INT8/FP32 (median of interleaved single-sample runs, batch 1),
- top-1 agreement of the INT8 bundle with the FP32 source (ONNX Runtime) on the held-out set,
  and accuracy against labels when the set has them.

TensorRT engines can't be built without an NVIDIA GPU and TensorRT; for `tensorrt-jetson` the QDQ
model is measured under ONNX Runtime and the row says so.

    python benchmarks/compile_bench.py                      # digits example, all targets
    python benchmarks/compile_bench.py --model mobilenet    # MobileNetV2-shaped, random weights
    python benchmarks/compile_bench.py -o json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.contracts.manifest import Manifest  # noqa: E402
from agent.runtimes import load_bundle  # noqa: E402
from compilers import CompileOptions, compile_model  # noqa: E402

PROFILES = {"onnx-x86": "x86-64-avx2", "tflite-arm": "raspberry-pi-5", "tensorrt-jetson": "jetson-orin-nano"}


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                keep = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "sse4_2")
                return [f for f in keep if f in flags]
    except OSError:
        pass
    return []


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def model_files(model: str, work: Path) -> tuple[Path, Path, Path | None]:
    if model == "digits":
        d = ROOT / "examples" / "digits"
        return d / "digits_cnn.onnx", d / "calibration.npz", d / "heldout.npz"
    out = work / "mobilenet"
    # its progress goes to stderr so that -o json leaves stdout as one JSON document
    subprocess.run(
        [sys.executable, str(ROOT / "examples/mobilenet/build.py"), "--out", str(out)],
        check=True,
        stdout=sys.stderr,
    )
    return out / "mobilenetv2.onnx", out / "calibration.npz", None


def samples(
    model: str, heldout: Path | None, calibration: Path, n: int
) -> tuple[np.ndarray, np.ndarray | None]:
    if heldout is not None:
        data = np.load(heldout)
        return data["x"][:n], data["y"][:n]
    return np.load(calibration)["input"][:n], None


def time_interleaved(runners: dict[str, object], x: np.ndarray, runs: int) -> dict[str, float]:
    """Median ms per single-sample inference, the runners taking turns so drift hits both."""
    name_in = {k: r.manifest.inputs[0].name for k, r in runners.items()}  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {k: [] for k in runners}
    for k, r in runners.items():  # warm-up
        r.infer({name_in[k]: x[:1]})  # type: ignore[attr-defined]
    for i in range(runs):
        one = x[i % len(x) : i % len(x) + 1]
        for k, r in runners.items():
            t0 = time.perf_counter()
            r.infer({name_in[k]: one})  # type: ignore[attr-defined]
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_target(
    target: str,
    src: Path,
    cal: Path,
    val: Path | None,
    x: np.ndarray,
    y: np.ndarray | None,
    runs: int,
    work: Path,
) -> dict[str, object]:
    profile = PROFILES[target]
    reports = {}
    for prec in ("int8", "fp32"):
        out = work / f"{target}-{prec}"
        reports[prec] = compile_model(
            src,
            profile,
            out,
            CompileOptions(precision=prec, calibration=cal, validation=val, min_agreement=0.0),
        )
    man = {p: Manifest.from_json((work / f"{target}-{p}" / "manifest.json").read_text()) for p in reports}
    size = {p: man[p].file(man[p].entrypoint).size for p in man}
    row: dict[str, object] = {
        "target": target,
        "profile": profile,
        "int8_bytes": size["int8"],
        "fp32_bytes": size["fp32"],
        "size_ratio": round(size["int8"] / size["fp32"], 3),
    }
    val8 = man["int8"].validation
    row["agreement"] = None if val8 is None else val8.top1_agreement
    row["accuracy_int8"] = None if val8 is None else val8.accuracy
    row["accuracy_fp32"] = None if val8 is None else val8.fp32_accuracy
    if val8 is not None and not val8.ran:
        row["latency_ratio"] = None
        row["note"] = f"not runnable here; validated with {val8.checked_with}"
        return row
    runners = {p: load_bundle(work / f"{target}-{p}", man[p], threads=1) for p in man}
    lat = time_interleaved(runners, x, runs)
    row.update(
        {
            "int8_ms": round(lat["int8"], 3),
            "fp32_ms": round(lat["fp32"], 3),
            "latency_ratio": round(lat["int8"] / lat["fp32"], 3),
        }
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["digits", "mobilenet"], default="digits")
    ap.add_argument("--targets", default="onnx-x86,tflite-arm,tensorrt-jetson")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("-o", "--output", choices=["table", "json"], default="table")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src, cal, val = model_files(args.model, work)
        x, y = samples(args.model, val, cal, 360)
        rows = [bench_target(t, src, cal, val, x, y, args.runs, work) for t in args.targets.split(",")]
    result = {
        "model": args.model,
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "runs": args.runs,
        "rows": rows,
    }
    if args.output == "json":
        print(json.dumps(result, indent=2))
        return 0
    print(f"model={args.model} cpu={result['cpu']} flags={','.join(result['cpu_flags'])} runs={args.runs}")
    cols = [
        "target",
        "size_ratio",
        "int8_ms",
        "fp32_ms",
        "latency_ratio",
        "agreement",
        "accuracy_int8",
        "accuracy_fp32",
        "note",
    ]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
