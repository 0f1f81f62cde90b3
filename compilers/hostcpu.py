"""Facts about the build host's CPU that explain its latency figures."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` (x86) or ``Features`` (ARM) of the first CPU in ``/proc/cpuinfo`` text (pure)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@cache
def host_cpu_flags() -> frozenset[str] | None:
    """This host's CPU flags, ``None`` where ``/proc/cpuinfo`` can't be read (not Linux)."""
    try:
        return parse_cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


def host_has_vnni() -> bool | None:
    """Whether this CPU has AVX512-VNNI or AVX-VNNI (fast INT8 dot products); ``None`` if unknown."""
    flags = host_cpu_flags()
    return None if flags is None else any(f in flags for f in VNNI_FLAGS)


def host_arch() -> str:
    """``x86_64``, ``aarch64``, ... as the device profiles name architectures."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
