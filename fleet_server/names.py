"""Names users choose (model names and versions, group names) become artifact keys and URL path
segments, so they are checked in one place."""

from __future__ import annotations

import re

from fleet_server.errors import InvalidRequestError

# Used with fullmatch: "$" alone would also accept a trailing newline ("digits\n").
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is 1-128 letters, digits, '.', '_', '+' or '-' starting with a letter
    or digit; else raise :class:`InvalidRequestError` naming ``what``."""
    if not NAME_RE.fullmatch(value):
        raise InvalidRequestError(
            f"{what} {value!r} is not valid: use 1-128 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit"
        )
    return value


def parse_model_ref(ref: str) -> tuple[str, str]:
    """``name:version`` → ``(name, version)``. Raises :class:`InvalidRequestError`."""
    name, sep, version = ref.partition(":")
    if not sep:
        raise InvalidRequestError(f"model {ref!r} is not name:version")
    return check_name(name, "model name"), check_name(version, "model version")
