"""Watching a deployment until it is decided: when to stop, and what went wrong (pure, plus one
polling loop over injected ``fetch``/``clock``/``sleep`` so it runs without a server or a clock).

The verdict is the server's: only ``SUCCEEDED`` is success. A device failing does not end the
watch by itself (the rollout's gate may tolerate it); the watch ends when the server has decided:
SUCCEEDED, ROLLED_BACK, FAILED (a compile), SUPERSEDED, or HALTED without a roll-back to wait for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Deployment = dict[str, Any]
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SUPERSEDED", "ROLLED_BACK"})


def failures(dep: Deployment) -> list[str]:
    """One line per failed compile and per failed device."""
    lines = []
    for c in dep.get("compile") or []:
        if str(c.get("status", "")).lower() == "failed":
            lines.append(f"compile {c.get('target')}/{c.get('precision')}: {c.get('error') or 'failed'}")
    for d in dep.get("devices") or []:
        if d.get("state") in ("FAILED", "TIMED_OUT"):
            err = d.get("error") or {}
            reason = (
                f"{err.get('code')}: {err.get('message')}"
                if isinstance(err, dict) and err
                else str(err or "failed")
            )
            lines.append(f"device {d.get('device_id')}: {reason}")
    return lines


def failure_summary(dep: Deployment) -> str:
    """What failed, in a few words: the server's own error, else counts by kind."""
    if dep.get("error"):
        return str(dep["error"])
    lines = failures(dep)
    compiles = sum(1 for line in lines if line.startswith("compile "))
    devices = len(lines) - compiles
    parts = [f"{compiles} compile(s) failed"] * bool(compiles) + [f"{devices} device(s) FAILED"] * bool(
        devices
    )
    return ", ".join(parts) or "no failure reported"


def is_settled(dep: Deployment) -> bool:
    """Whether watching can stop: the server decided (a halt that rolls back is decided once the
    roll-back ended)."""
    state = dep.get("state")
    rolling_back = bool((dep.get("rollout") or {}).get("rollback"))
    compile_failed = any(str(c.get("status", "")).lower() == "failed" for c in dep.get("compile") or [])
    return state in FINAL_STATES or (state == "HALTED" and not rolling_back) or compile_failed


@dataclass(frozen=True)
class WatchResult:
    deployment: Deployment
    timed_out: bool

    @property
    def succeeded(self) -> bool:
        return not self.timed_out and self.deployment.get("state") == "SUCCEEDED"


def watch(
    fetch: Callable[[], Deployment],
    timeout: float,
    interval: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    on_update: Callable[[Deployment], None] = lambda _dep: None,
) -> WatchResult:
    """Poll ``fetch`` every ``interval`` seconds until :func:`is_settled` or ``timeout`` passed."""
    deadline = clock() + timeout
    while True:
        dep = fetch()
        on_update(dep)
        if is_settled(dep):
            return WatchResult(dep, timed_out=False)
        left = deadline - clock()
        if left <= 0:
            return WatchResult(dep, timed_out=True)
        sleep(min(interval, left))
