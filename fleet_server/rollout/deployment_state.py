"""The error a deployment shows when compiles it needs failed (pure)."""

from __future__ import annotations

from collections.abc import Iterable


def compile_failure_message(failed: Iterable[str]) -> str:
    """One message out of the failed compiles' errors (each already names its target)."""
    return "; ".join(sorted(set(failed)))
