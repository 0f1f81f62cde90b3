"""The offline telemetry buffer: messages kept on disk while the broker is away, replayed in order.

One file per message, ``<seq>.json`` (zero-padded, so names sort in order), each written with
:func:`agent.durable.atomic_write`; the count of messages dropped so far is the ``dropped`` file.
The buffer is bounded by ``max_messages`` and ``max_bytes``: adding past a bound drops the oldest
messages first, and each dropped message counts (plus whatever ``dropped`` count it carried
itself, so no loss goes unreported). The publisher takes the count into its next message
(:meth:`TelemetryBuffer.take_dropped`).

Not thread-safe: the publisher's thread alone uses it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from agent.durable import atomic_write, remove_stale_temps

log = logging.getLogger(__name__)

DROPPED_FILE = "dropped"


class TelemetryBuffer:
    def __init__(self, directory: Path, max_messages: int = 720, max_bytes: int = 1024 * 1024) -> None:
        """``max_messages`` 720 is an hour at the default 5 s interval; ``max_bytes`` bounds the
        disk it may use. Raises :class:`OSError` when the directory can't be made."""
        self.dir = directory
        self.max_messages = max(1, max_messages)
        self.max_bytes = max(1, max_bytes)
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(directory / DROPPED_FILE)
        for tmp in directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        self._files: list[tuple[int, Path, int]] = sorted(
            (int(p.stem), p, p.stat().st_size) for p in directory.glob("*.json") if p.stem.isdigit()
        )
        self._bytes = sum(size for _, _, size in self._files)
        self._dropped = self._read_dropped()

    def __len__(self) -> int:
        return len(self._files)

    @property
    def next_seq(self) -> int:
        """One past the newest buffered message's seq (0 when empty)."""
        return self._files[-1][0] + 1 if self._files else 0

    @property
    def dropped(self) -> int:
        return self._dropped

    def add(self, seq: int, payload: bytes) -> int:
        """Keep ``payload`` as message ``seq`` (newer than all kept), dropping the oldest messages
        beyond the bounds; returns how many were dropped. Raises :class:`OSError` (nothing is
        then kept of it)."""
        path = self.dir / f"{seq:012d}.json"
        atomic_write(path, payload)
        self._files.append((seq, path, len(payload)))
        self._bytes += len(payload)
        lost = evicted = 0
        while len(self._files) > self.max_messages or (self._bytes > self.max_bytes and len(self._files) > 1):
            _seq, old, size = self._files.pop(0)
            lost += 1 + _carried_dropped(old)
            evicted += 1
            old.unlink(missing_ok=True)
            self._bytes -= size
        if lost:
            self._set_dropped(self._dropped + lost)
        return evicted

    def oldest(self) -> tuple[int, bytes] | None:
        """The oldest kept message (seq, payload), ``None`` when empty; a file that can't be read
        is dropped and counted."""
        while self._files:
            seq, path, _size = self._files[0]
            try:
                return seq, path.read_bytes()
            except OSError as exc:
                log.warning("buffered telemetry %s unreadable (%s); dropped", path.name, exc)
                self.remove_oldest()
                self._set_dropped(self._dropped + 1)
        return None

    def remove_oldest(self) -> None:
        """Forget the oldest message (it was sent)."""
        if self._files:
            _seq, path, size = self._files.pop(0)
            path.unlink(missing_ok=True)
            self._bytes -= size

    def take_dropped(self) -> int:
        """The dropped count so far, reset to 0 (the caller sends it on)."""
        n = self._dropped
        if n:
            self._set_dropped(0)
        return n

    def give_back_dropped(self, n: int) -> None:
        """Add ``n`` back (a message carrying the count was itself lost before it was kept)."""
        if n:
            self._set_dropped(self._dropped + n)

    def _read_dropped(self) -> int:
        try:
            return max(0, int((self.dir / DROPPED_FILE).read_text().strip() or 0))
        except (OSError, ValueError):
            return 0

    def _set_dropped(self, n: int) -> None:
        self._dropped = n
        try:
            atomic_write(self.dir / DROPPED_FILE, str(n).encode())
        except OSError as exc:  # the count still lives in memory for this run
            log.warning("could not persist the dropped telemetry count: %s", exc)


def _carried_dropped(path: Path) -> int:
    try:
        value = json.loads(path.read_bytes()).get("dropped", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) and value > 0 else 0
