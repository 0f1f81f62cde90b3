"""Guards for what the agent reads off the broker: bounded size and nesting before any parse,
and a quarantine of refused messages.

A device topic is written by the fleet server, but a bug there, or anyone holding its broker
credentials, can put anything on it, and a retained message comes back at every connect. So a
payload is measured before it is parsed (size first, then nesting, with a scan that builds
nothing), and one that was refused is remembered by its sha256, so that a retained poison is not
handled again after a restart (only counted and dropped).

Pure but for :class:`Quarantine`'s file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from agent import __version__
from agent.durable import atomic_write, remove_stale_temps

log = logging.getLogger(__name__)

# A desired state is a generation, one entry per model (name, version, target, TUF path, URL,
# size, sha256: about 600 bytes) and two small policies: under 8 KiB for the handful of models
# an edge device serves. 256 KiB leaves room for some 400 models, and stays small next to a
# Raspberry Pi's memory even with paho's copy and the parsed objects beside it.
DESIRED_MAX_BYTES = 256 * 1024
# The desired state nests four deep (state, models, a model, its fields; policies alike): 32
# leaves room for any later schema and is far below where json's recursion overflows (~1000).
MAX_DEPTH = 32

# A JSON string (escapes included) or a bracket: the scan skips strings at C speed and looks at
# brackets only, so a bracket inside a string does not count.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


class MessageRefused(ValueError):
    """A message that must not be handled; ``reason`` is its metric label (``too_large``,
    ``too_deep``, ``malformed``, ``handler_error``, ``quarantined``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class InboundLimits:
    """Payload bounds per topic kind (the last segment of a device topic); a kind not listed
    is refused whatever its size."""

    max_bytes: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({"desired": DESIRED_MAX_BYTES})
    )
    max_depth: int = MAX_DEPTH

    def check(self, kind: str, payload: bytes) -> None:
        """Refuse ``payload`` on a ``kind`` topic when it is too large or nested too deep.

        Raises :class:`MessageRefused` (``too_large``, ``too_deep``). Never parses the payload.
        """
        self.check_size(kind, payload)
        self.check_depth(payload)

    def check_size(self, kind: str, payload: bytes) -> None:
        """Raises :class:`MessageRefused` (``too_large``) past the ``kind`` topic's bound."""
        limit = self.max_bytes.get(kind, 0)
        if len(payload) > limit:
            raise MessageRefused("too_large", f"{len(payload)} bytes on a {kind} topic (at most {limit})")

    def check_depth(self, payload: bytes) -> None:
        """Raises :class:`MessageRefused` (``too_deep``) past ``max_depth``."""
        if nesting_depth(payload, stop_at=self.max_depth + 1) > self.max_depth:
            raise MessageRefused("too_deep", f"JSON nested more than {self.max_depth} deep")


def nesting_depth(payload: bytes, stop_at: int | None = None) -> int:
    """How deep the JSON arrays and objects in ``payload`` nest (brackets inside strings
    ignored), or ``stop_at`` as soon as that depth is reached. Builds nothing; never raises."""
    depth = deepest = 0
    for match in _TOKEN.finditer(payload):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
            if stop_at is not None and deepest >= stop_at:
                return deepest
        else:
            depth = max(depth - 1, 0)
    return deepest


class LogThrottle:
    """At most one log line per key every ``interval`` seconds: a flood of poison messages
    (retained, or sent in a loop) must not fill a device's small disk with logs. The lines held
    back are counted, and the next line let through says how many. Pure but for its clock."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        """``None`` when this line is to be held back (it is counted); otherwise the number of
        lines of ``key`` held back since the last one let through."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class Quarantine:
    """The sha256s of the last ``keep`` refused messages, kept in ``path`` (atomically replaced)
    when one is given, so that a refusal outlives a restart; in memory otherwise.

    The file names the ``agent_version`` that refused them, and another version starts afresh:
    a newer agent may well take what an older one refused (a newer schema). A file that can't be
    read is started afresh too: the worst case is that a poison message is refused once more, by
    the same guards.
    """

    def __init__(self, path: Path | None = None, keep: int = 64, agent_version: str = __version__) -> None:
        self.path = path
        self.keep = keep
        self.agent_version = agent_version
        self._digests: list[str] = self._load()

    def _load(self) -> list[str]:
        if self.path is None:
            return []
        remove_stale_temps(self.path)
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            log.warning("quarantine file %s is unreadable (%s); starting afresh", self.path, exc)
            return []
        digests = data.get("digests") if isinstance(data, dict) else None
        if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
            log.warning("quarantine file %s holds no list of digests; starting afresh", self.path)
            return []
        if data.get("agent_version") != self.agent_version:
            log.info("quarantine file %s was written by another agent version; starting afresh", self.path)
            return []
        return digests[-self.keep :]

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._digests

    def add(self, sha256: str) -> None:
        """Remember ``sha256`` (the oldest is forgotten beyond ``keep``). Raises ``OSError``
        when the file can't be written; the digest is remembered in memory anyway."""
        if sha256 in self._digests:
            return
        self._digests = [*self._digests, sha256][-self.keep :]
        if self.path is not None:
            body = {"agent_version": self.agent_version, "digests": self._digests}
            atomic_write(self.path, json.dumps(body).encode())
