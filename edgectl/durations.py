"""Durations as operators type them (``30d``, ``12h``, ``90m``, ``45s``, ``2w``) → seconds."""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"([1-9][0-9]{0,8})([smhdw])")


def parse_duration(text: str) -> int:
    """Seconds in ``text``: a positive whole number and one unit of s, m, h, d or w. Raises
    ``ValueError`` saying what is accepted."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"{text!r} is not a duration: use a number and one of s, m, h, d, w (e.g. 30d, 12h)")
    return int(found.group(1)) * UNITS[found.group(2)]
