"""The summary of ``edgectl compile``: one row per profile from ``CompileReport.to_dict()``, then
each profile's notes (they are sentences, too long for a column)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from edgectl.views._cells import cell, size, table


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _ratio(x: Any) -> str:
    return "" if x is None else f" ({x:.2f}x)"


def _memory(fit: dict[str, Any]) -> Text:
    if not fit or fit.get("fits_memory") is None:
        return cell(None)
    detail = f"~{fit['memory_estimate_mib']:.0f} of {fit['memory_mib']} MiB"
    return (
        Text(f"yes ({detail})", style="green") if fit["fits_memory"] else Text(f"NO ({detail})", style="red")
    )


def _budget(fit: dict[str, Any]) -> Text:
    budget, within = fit.get("latency_budget_ms"), fit.get("within_latency_budget")
    if budget is None:
        return cell("no budget", "dim")
    if within is None:
        return Text(f"not measured ({budget:g} ms)", style="dim")
    return Text(f"{'yes' if within else 'NO'} ({budget:g} ms)", style="green" if within else "red")


def _accuracy_lines(r: dict[str, Any]) -> list[str]:
    """The gate's figure per output, the calibration, and what ``auto`` chose."""
    lines = []
    figures = [
        f"{m['output']} {m['metric']} {m['value']:.4g} ({'ok' if m['passed'] else 'FAILED'}, "
        f"{'>=' if m.get('higher_is_better', True) else '<='} {m['threshold']:g})"
        for m in r.get("metrics") or []
    ]
    if figures:
        lines.append("gate: " + "; ".join(figures))
    if r.get("calibration_method"):
        lines.append(f"calibration: {r['calibration_method']}")
    if r.get("precision_choice"):
        lines.append(r["precision_choice"])
    return lines


def compile_summary(reports: list[dict[str, Any]]) -> RenderableType:
    t = table(
        "PROFILE",
        "TARGET",
        "PRECISION",
        "SIZE (vs FP32)",
        "TOP-1 AGREEMENT",
        "ACCURACY (FP32)",
        "LATENCY (vs FP32)",
        "MEMORY FIT",
        "LATENCY BUDGET",
    )
    notes: list[Text] = []
    for r in reports:
        fit = r.get("fit") or {}
        accuracy = (
            "-" if r.get("accuracy") is None else f"{_pct(r['accuracy'])} ({_pct(r.get('fp32_accuracy'))})"
        )
        latency = (
            "-"
            if r.get("latency_ms") is None
            else f"{r['latency_ms']:.3f} ms{_ratio(r.get('latency_ratio'))}"
        )
        t.add_row(
            cell(r.get("profile"), "bold"),
            cell(r.get("target")),
            cell(r.get("precision")),
            cell(size(r.get("size_bytes")) + _ratio(r.get("size_ratio"))),
            cell(_pct(r.get("top1_agreement"))),
            cell(accuracy),
            cell(latency),
            _memory(fit),
            _budget(fit),
        )
        extra = (
            [fit["latency_note"]]
            if fit.get("latency_note") and fit.get("within_latency_budget") is None
            else []
        )
        intake = [f"intake: {step}" for step in r.get("intake_steps") or []]
        if r.get("strategy"):
            intake.append(f"converted with strategy {r['strategy']}")
        for note in dict.fromkeys([*intake, *_accuracy_lines(r), *(r.get("notes") or []), *extra]):
            notes.append(Text.assemble((f"{r.get('profile')}: ", "bold"), note))
    return Group(t, *notes) if notes else t
