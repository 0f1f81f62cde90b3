"""Give one process a fraction of a core (a CFS quota), so a benchmark can stand a slow device
beside a faster cloud on one small machine.

Uses the cgroup ``cpu`` controller: version 1 (``/sys/fs/cgroup/cpu``, ``cpu.cfs_quota_us``) or
version 2 (``cpu.max``). Needs write access to the cgroup tree (root); otherwise
:func:`limit` says why and changes nothing. The group is removed again by :meth:`Quota.release`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")
PERIOD_US = 10_000  # short: a long period lets a throttled device stall for most of it


@dataclass
class Quota:
    group: Path | None
    share: float | None
    note: str

    def release(self) -> None:
        if self.group is None:
            return
        root = self.group.parent
        with contextlib.suppress(OSError):
            for pid in (self.group / "cgroup.procs").read_text().split():
                (root / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.group.rmdir()
        self.group = None


def limit(pid: int, share: float, name: str) -> Quota:
    """Move ``pid`` (all its threads) into a new cgroup allowed ``share`` of one core."""
    quota = max(1000, int(PERIOD_US * share))  # the kernel refuses quotas under 1 ms
    for root, files in (
        (V1, {"cpu.cfs_period_us": str(PERIOD_US), "cpu.cfs_quota_us": str(quota)}),
        (V2, {"cpu.max": f"{quota} {PERIOD_US}"}),
    ):
        if not (root / next(iter(files))).exists() and not (root / "cgroup.controllers").exists():
            continue
        group = root / f"edgefleet-bench-{name}-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            for fname, value in files.items():
                (group / fname).write_text(value)
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            with contextlib.suppress(OSError):
                group.rmdir()
            why = f"{type(exc).__name__}: {exc}"
            continue_note = f"cgroup {root} not usable ({why})"
            last = Quota(None, None, continue_note)
            continue
        return Quota(group, share, f"{name} limited to {share:.2f} of a core (cgroup {group})")
    return locals().get("last") or Quota(None, None, "no writable cgroup cpu controller: not limited")
