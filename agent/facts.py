"""Facts about this device that registration reports: platform, resources, runtimes."""

from __future__ import annotations

import logging
import os
import platform

from agent import __version__
from agent.runtimes.registry import get_runtime, known_runtimes

log = logging.getLogger(__name__)


def runtime_problems() -> dict[str, str | None]:
    """Every known runtime → ``None`` when it can run here, else one line saying why not.

    A runtime adapter that fails to import (a plug-in with a missing dependency) counts as
    unavailable instead of taking the agent down.
    """
    out: dict[str, str | None] = {}
    for name in known_runtimes():
        try:
            out[name] = get_runtime(name).unavailable_reason()
        except Exception as exc:  # an adapter's import error, whatever it is
            out[name] = f"adapter {name!r} can't be imported: {exc}"
    return out


def runtime_versions() -> dict[str, str | None]:
    """Every known runtime → its installed version, ``None`` where it can't run here."""
    out: dict[str, str | None] = {}
    for name, problem in runtime_problems().items():
        out[name] = None if problem else get_runtime(name).version()
    return out


def memory_mb() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20))
    except (ValueError, OSError, AttributeError):
        return None


def device_facts(inference_url: str | None) -> dict[str, object]:
    """The ``facts`` object of the registration request (docs/api.md)."""
    return {
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "memory_mb": memory_mb(),
        "runtimes": runtime_versions(),
        "agent_version": __version__,
        "inference_url": inference_url,
    }
