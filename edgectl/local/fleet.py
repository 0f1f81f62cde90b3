"""A whole fleet on one machine: one fleet server and N agents as real processes on loopback.

Used by ``edgectl quickstart`` and ``edgectl simulate``. The fleet owns a run directory (server
data, each device's data, every log) and stops its processes in order: agents first, so their
offline status reaches the broker the server runs, then the server.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgectl.local.launcher import (
    Launched,
    LaunchError,
    start_agent,
    start_server,
    throwaway_keys,
    trust_root,
)

# x86 and ARM mixed, so a small fleet already needs two compile targets.
DEFAULT_PROFILES = ("x86-64-avx2", "raspberry-pi-5", "x86-64-avx512-vnni", "raspberry-pi-4")


def device_plan(count: int, profiles: Iterable[str], prefix: str = "dev") -> list[tuple[str, str]]:
    """``count`` (device id, profile) pairs, cycling through ``profiles`` (pure)."""
    if count < 1:
        raise ValueError("a fleet needs at least one device")
    pool = list(profiles) or list(DEFAULT_PROFILES)
    return [
        (f"{prefix}-{i + 1:0{max(2, len(str(count)))}d}", p)
        for i, p in zip(range(count), itertools.cycle(pool), strict=False)
    ]


@dataclass
class LocalFleet:
    run_dir: Path
    server: Launched | None = None
    agents: dict[str, Launched] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    keys_dir: Path | None = None  # throw-away TUF keys, made by start_server

    @property
    def server_url(self) -> str:
        assert self.server is not None
        return str(self.server.ready["url"])

    def start_server(self, broker: str = "auto") -> dict[str, Any]:
        self.keys_dir = throwaway_keys(self.run_dir / "keys")  # TUF keys for this run only
        self.server = start_server(self.run_dir / "server", broker=broker, keys_dir=self.keys_dir)
        return self.server.ready

    def enroll_token(self, group: str, uses: int) -> str:
        """A one-hour enrollment token for ``uses`` devices into the existing ``group``."""
        from edgectl.client import FleetClient

        with FleetClient(self.server_url) as api:
            return str(api.create_enroll_token(group, uses=uses)["token"])

    def start_agents(
        self,
        plan: list[tuple[str, str]],
        labels: dict[str, str],
        on_ready: Callable[[str], None] = lambda _d: None,
        timeout: float = 90.0,
        group: str | None = None,
    ) -> None:
        """Start every agent at once, then wait for each; raises :class:`LaunchError`. With
        ``group`` (which must exist), the agents enroll into it with one token made for them."""
        token = self.enroll_token(group, len(plan)) if group is not None else None
        for device_id, profile in plan:
            self.profiles[device_id] = profile
            self.agents[device_id] = start_agent(
                self.server_url,
                device_id,
                profile,
                self.run_dir / "devices" / device_id,
                labels=labels,
                log_dir=self.run_dir / "logs",
                wait=False,
                tuf_root=None if self.keys_dir is None else trust_root(self.keys_dir),
                enroll_token=token,
            )
        for device_id, agent in self.agents.items():
            agent.wait_ready(timeout)
            on_ready(device_id)

    def inference_url(self, device_id: str) -> str:
        return str(self.agents[device_id].ready["inference_url"])

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["DEFAULT_PROFILES", "LaunchError", "LocalFleet", "device_plan"]
