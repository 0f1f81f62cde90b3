"""``--expires`` durations (``edgectl.durations``)."""

from __future__ import annotations

import pytest

from edgectl.durations import parse_duration


def test_durations() -> None:
    assert parse_duration("45s") == 45
    assert parse_duration("90m") == 5400
    assert parse_duration("12h") == 43200
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration(" 2W ") == 2 * 604800


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "-1d", "1.5h", "3 days", "1y"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="s, m, h, d, w"):
        parse_duration(text)
