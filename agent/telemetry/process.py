"""The agent process's CPU and resident memory, and the device's temperature where readable.

CPU is the process's CPU time over wall time between two samples (100 = one core busy). Memory
is the resident set from ``/proc/self/statm`` (Linux), else the peak from ``getrusage``.
Temperature is the hottest ``/sys/class/thermal/thermal_zone*/temp`` (millidegrees); ``None``
when there is none (containers, most x86 servers).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

THERMAL = Path("/sys/class/thermal")


class ProcessSampler:
    def __init__(self, thermal: Path = THERMAL, clock: Callable[[], float] = time.monotonic) -> None:
        self._thermal = thermal
        self._clock = clock
        self._last = (clock(), time.process_time())

    def cpu_percent(self) -> float | None:
        """CPU use since the previous call (or since made), ``None`` over no time at all."""
        now, cpu = self._clock(), time.process_time()
        (then, cpu_then), self._last = self._last, (now, cpu)
        if now <= then:
            return None
        return round(100.0 * (cpu - cpu_then) / (now - then), 2)

    def memory_mb(self) -> float | None:
        try:
            resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
            return round(resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 2)
        except (OSError, ValueError, IndexError):
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
            return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 2)

    def temperature_c(self) -> float | None:
        hottest: float | None = None
        for zone in self._thermal.glob("thermal_zone*/temp"):
            try:
                value = int(zone.read_text().strip()) / 1000.0
            except (OSError, ValueError):
                continue
            if -50.0 < value < 200.0 and (hottest is None or value > hottest):
                hottest = value
        return hottest
