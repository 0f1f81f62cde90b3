"""A count of the agent's MQTT connections that only grows, kept in a small file so it survives
restarts (see :class:`agent.contracts.state.Status`)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from agent.durable import atomic_write, remove_stale_temps

log = logging.getLogger(__name__)


class ConnectionCounter:
    """``next()`` returns the previous count plus one and stores it atomically and durably.
    Without a path the count lives in memory only (tests, or a device with no data dir)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._value = self._read()

    def _read(self) -> int:
        if self._path is None:
            return 0
        remove_stale_temps(self._path)  # the agent died while storing; the file still holds the old count
        try:
            return int(self._path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            # Not written by us (writes are atomic). Starting again from 0 only costs the server's
            # view of online/offline until the count passes the old one; reports still count.
            log.warning("%s does not hold a number; counting MQTT connections from 0", self._path)
            return 0

    def next(self) -> int:
        with self._lock:
            self._value += 1
            if self._path is not None:
                atomic_write(self._path, str(self._value).encode())
            return self._value
