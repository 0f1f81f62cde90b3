"""A count of the agent's MQTT connections that only grows, kept in a small file so it survives
restarts (see :class:`agent.contracts.state.Status`)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class ConnectionCounter:
    """``next()`` returns the previous count plus one and stores it (temp file, fsync, rename).
    Without a path the count lives in memory only (tests, or a device with no data dir)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._value = self._read()

    def _read(self) -> int:
        if self._path is None:
            return 0
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
                tmp = self._path.with_name(self._path.name + ".tmp")
                with open(tmp, "w") as fh:
                    fh.write(str(self._value))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self._path)
            return self._value
