"""The serving benchmark still runs: a quick pass (about 1 s a point) over the digits model in
process and through a real agent process, every row with figures and no errors. Timing is not
judged here (benchmarks/ and BENCHMARKS.md do that on a quiet machine); only that the rows the
figures come from can be produced."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_a_quick_serving_benchmark_produces_every_row() -> None:
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "serving_bench.py"), "--quick",
        "--models", "digits", "--servers", "in-process,agent", "--concurrency", "1", "-o", "json",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    rows = {(r["server"], r["protocol"]): r for r in out["rows"]}
    agent = {("agent", p) for p in ("http-json", "http-binary", "grpc")}
    assert set(rows) == {("in-process", "ort")} | agent
    for key, row in rows.items():
        (point,) = row.get("points") or [None]
        assert point is not None, (key, row)
        assert point["requests"] > 0 and point["errors"] == 0 and point["p50_ms"] > 0, (key, point)
    assert all(rows[("agent", p)]["checked"] for p in ("http-json", "http-binary", "grpc"))
