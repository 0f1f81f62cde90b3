"""Which cores the device, the cloud stand-in and the client get in the offload benchmark.

On a small machine the "device" and the "cloud" would otherwise share the CPU, and the cloud
would add no capacity. With at least two usable CPUs the device gets the first one alone; the
cloud (its agent and the delay proxy) and the client get the others: on two CPUs they share the
second, on three or more the client gets the last one and the cloud the rest. With one CPU
nothing is pinned and the result says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Pinning:
    device: list[int] | None
    cloud: list[int] | None
    client: list[int] | None
    note: str

    def as_dict(self) -> dict[str, object]:
        return {"device": self.device, "cloud": self.cloud, "client": self.client, "note": self.note}


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def plan(cpus: list[int] | None = None, enabled: bool = True) -> Pinning:
    """The split of ``cpus`` (default: this process's usable CPUs); ``enabled=False`` or a
    single CPU: no pinning."""
    cpus = usable_cpus() if cpus is None else sorted(cpus)
    if not enabled:
        return Pinning(None, None, None, "not pinned (--no-pin)")
    if len(cpus) < 2:
        return Pinning(None, None, None, f"not pinned: {len(cpus)} usable CPU; the cloud adds no capacity")
    device, rest = cpus[:1], cpus[1:]
    if len(rest) == 1:
        return Pinning(device, rest, rest, f"device on CPU {device[0]}; cloud and client share CPU {rest[0]}")
    cloud, client = rest[:-1], rest[-1:]
    return Pinning(device, cloud, client, f"device on CPU {device[0]}; cloud on {cloud}; client on {client}")


def pin_self(cpus: list[int] | None) -> None:
    """Pin this process (the client) to ``cpus``; nothing when ``None``."""
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))
