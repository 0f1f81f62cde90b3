"""The derived ratios the issue's targets are stated in, and the printed tables.

Rows are dicts: ``model``, ``server``, ``protocol``, ``points`` (``Point.summary()`` per
concurrency), and ``skipped`` / ``error`` when a row has no figures.
"""

from __future__ import annotations

import sys
from typing import Any

AGENT_FAST = ("http-binary", "grpc")  # the protocols the latency and peer targets are stated for
PEERS = ("kserve", "mlserver")


def _point(
    rows: list[dict[str, Any]], model: str, server: str, protocol: str, c: int
) -> dict[str, Any] | None:
    for r in rows:
        if (r["model"], r["server"], r["protocol"]) == (model, server, protocol):
            for p in r.get("points", []):
                if p["concurrency"] == c and p["throughput_rps"] is not None:
                    return p  # type: ignore[no-any-return]
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def ratios(rows: list[dict[str, Any]], model: str, low: int = 1, high: int = 16) -> dict[str, Any]:
    """For one model: added p50 over in-process at ``low`` concurrency (ms), and at ``high``:
    agent / in-process throughput, best agent / best peer throughput, JSON / binary throughput,
    each with the issue's target and whether it is met (``None``: not measured)."""
    base1 = _point(rows, model, "in-process", "ort", low)
    baseh = _point(rows, model, "in-process", "ort", high)
    out: dict[str, Any] = {"model": model}

    added = {}
    for proto in ("http-json", *AGENT_FAST):
        p = _point(rows, model, "agent", proto, low)
        added[proto] = None if p is None or base1 is None else round(p["p50_ms"] - base1["p50_ms"], 3)
    best_added = min((v for k, v in added.items() if k in AGENT_FAST and v is not None), default=None)
    out[f"added_p50_ms_c{low}"] = added | {
        "target": "<= 0.3 (binary HTTP or gRPC)",
        "meets": _meets(best_added, 0.3, le=True),
    }

    thr = {proto: _thr(_point(rows, model, "agent", proto, high)) for proto in ("http-json", *AGENT_FAST)}
    over_inproc = {k: _ratio(v, _thr(baseh)) for k, v in thr.items()}
    best_fast = max((v for k, v in over_inproc.items() if k in AGENT_FAST and v is not None), default=None)
    out[f"agent_over_inprocess_c{high}"] = over_inproc | {
        "target": ">= 0.9 (MobileNetV2-shaped model)",
        "meets": _meets(best_fast, 0.9) if model == "mobilenet" else None,
    }

    agent_best = max(((v, k) for k, v in thr.items() if k in AGENT_FAST and v is not None), default=None)
    peer_best = None
    for r in rows:
        if r["model"] == model and r["server"] in PEERS:
            t = _thr(_point(rows, model, r["server"], r["protocol"], high))
            if t is not None and (peer_best is None or t > peer_best[0]):
                peer_best = (t, f"{r['server']} {r['protocol']}")
    ratio = None if agent_best is None or peer_best is None else _ratio(agent_best[0], peer_best[0])
    out[f"agent_over_best_peer_c{high}"] = {
        "ratio": ratio,
        "agent": None if agent_best is None else agent_best[1],
        "best_peer": None if peer_best is None else peer_best[1],
        "target": ">= 2.0 (both models)",
        "meets": _meets(ratio, 2.0),
    }

    jb = _ratio(thr["http-json"], thr["http-binary"])
    out[f"json_over_binary_c{high}"] = {
        "ratio": jb,
        "target": ">= 0.5 (MobileNetV2-shaped model)",
        "meets": _meets(jb, 0.5) if model == "mobilenet" else None,
    }
    return out


def _thr(p: dict[str, Any] | None) -> float | None:
    return None if p is None else p["throughput_rps"]  # type: ignore[no-any-return]


def _meets(v: float | None, bound: float, le: bool = False) -> bool | None:
    if v is None:
        return None
    return v <= bound if le else v >= bound


def print_tables(result: dict[str, Any]) -> None:
    """Rich tables when Rich is there, plain lines otherwise."""
    m = result["machine"]
    flags = ",".join(k for k, v in m["cpu_flags"].items() if v) or "-"
    head = (
        f"{m['cpu']} | flags {flags} | {m['cores']} cores | ORT threads {result['settings']['threads']} | "
        f"warm-up {result['settings']['warmup_s']} s, {result['settings']['duration_s']} s a point | "
        f"load before {result['load_average']['before']}"
        + (" | QUICK: smoke figures only" if result["settings"]["quick"] else "")
        + ("" if result["quiet_machine"] in (True, None) else " | BUSY MACHINE: not to be trusted")
    )
    cols = ["model", "server", "protocol", "c", "req/s", "p50 ms", "p99 ms", "errors", "note"]
    lines = []
    for r in result["rows"]:
        note = r.get("skipped") or r.get("error") or ""
        if not r.get("points"):
            lines.append([r["model"], r["server"], r["protocol"], "", "", "", "", "", note])
        for p in r.get("points", []):
            lines.append(
                [
                    r["model"],
                    r["server"],
                    r["protocol"],
                    str(p["concurrency"]),
                    _f(p["throughput_rps"], 1),
                    _f(p["p50_ms"], 3),
                    _f(p["p99_ms"], 3),
                    str(p["errors"]),
                    (p["first_error"] or note or "")[:60],
                ]
            )
    ratio_lines = []
    for d in result["ratios"]:
        for key, v in d.items():
            if key == "model":
                continue
            shown = {k: x for k, x in v.items() if k not in ("target", "meets")}
            ratio_lines.append(
                [
                    d["model"],
                    key,
                    ", ".join(f"{k} {x}" for k, x in shown.items()),
                    v["target"],
                    str(v["meets"]),
                ]
            )
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(head)
        for row in [cols, *lines]:
            print(" | ".join(row))
        for row in ratio_lines:
            print(" | ".join(row))
        return
    # Piped output gets 80 columns from Rich by default, too narrow for these tables.
    console = Console(width=None if sys.stdout.isatty() else 170)
    console.print(head)
    t = Table(*cols)
    for row in lines:
        t.add_row(*row)
    console.print(t)
    rt = Table("model", "ratio", "figures", "target", "meets")
    for row in ratio_lines:
        rt.add_row(*row)
    console.print(rt)


def _f(v: float | None, n: int) -> str:
    return "-" if v is None else f"{v:.{n}f}"
