"""The Grafana dashboard (deploy/grafana/edgefleet.json) queries only series that exist: every
metric name in every PromQL expression is exported by a running fleet server's or a running
agent's ``/metrics`` (both scraped for real)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.agent_testkit import AgentProcess

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "edgefleet.json"

# PromQL words that are not metric names: functions (always followed by "("), aggregation and
# vector-matching keywords and their label lists, and the few bare keywords.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_FUNCTION = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(")
_NAME = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "le"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = _FUNCTION.sub(" ", text)
    names = {n for n in _NAME.findall(text) if n.lower() not in _KEYWORDS}
    return {n for n in names if not re.fullmatch(r"[0-9.e+-]+", n)}


def test_metric_names_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, model) (rate(a_seconds_bucket{model=~"x|y"}[5m]))) '
        "/ on (model) group_left (version) b_info and count(c == 0) > bool 1"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_info", "c"}


def exported(text: str) -> set[str]:
    """Every series name a scrape can answer for, from its ``# TYPE`` lines (a labelled counter
    not incremented yet has no sample, but its series is exported all the same) and samples."""
    out: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out.add(name)
            out.update(name + s for s in _SUFFIXES.get(kind, ()))
        elif line and not line.startswith("#"):
            out.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return out


@pytest.fixture
def agent_metrics(tmp_path: Path) -> Iterator[str]:
    """A real agent process (its fleet server unreachable: it serves and keeps retrying)."""
    pytest.importorskip("onnxruntime")
    agent = AgentProcess(tmp_path / "agent", "http://127.0.0.1:9", "dash-1", "--grpc-port", "-1")
    try:
        agent.wait_ready()
        yield httpx.get(f"{agent.url}/metrics", timeout=10).text
    finally:
        agent.terminate()


def test_every_dashboard_series_is_exported(settings: Any, start_app: Any, agent_metrics: str) -> None:
    server = start_app(settings).get("/metrics").text
    have = exported(server) | exported(agent_metrics)
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    missing = {}
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        gone = names - have
        if gone:
            missing[expr] = sorted(gone)
    assert not missing, f"the dashboard queries series nobody exports: {missing}"
    # What the dashboard's sections are for is there.
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("devices online", "latency", "error", "offload", "dropped"):
        assert topic in titles
