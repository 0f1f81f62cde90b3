"""What each model x target compile of the corpus tier ended in (filled as the tests run)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    status: str  # "bundle", "unsupported", or the CompileError class that ended it
    seconds: float
    detail: str = ""


OUTCOMES: dict[tuple[str, str], Outcome] = {}
