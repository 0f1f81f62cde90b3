"""Which wave each device of a deployment is in (pure).

Devices are ordered by a hash of their id (:func:`device_rank`), not by name or registration
time, so the canary set is a fair sample of the group and the same one on every retry of the same
group. The waves take the first devices of that order up to each of the spec's cumulative bounds.
A device that joins once the rollout started goes into the last wave.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from fleet_server.rollout.spec import RolloutSpec


def device_rank(device_id: str) -> int:
    """A device's place in every rollout's order: the first 8 bytes of sha256 of its id."""
    return int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big")


def ordered(device_ids: Sequence[str]) -> list[str]:
    return sorted(device_ids, key=lambda d: (device_rank(d), d))


def assign_waves(
    spec: RolloutSpec, device_ids: Sequence[str], known: Mapping[str, int | None]
) -> dict[str, int]:
    """Each of ``device_ids`` → its wave (0-based). ``known`` holds the waves already assigned
    (``None``: not yet). With none assigned yet, the whole set is split by the spec's bounds;
    otherwise devices keep theirs and newcomers take the last wave."""
    assigned = {d: w for d, w in known.items() if w is not None and d in set(device_ids)}
    if not assigned:
        bounds = spec.bounds(len(device_ids))
        out: dict[str, int] = {}
        wave = 0
        for i, d in enumerate(ordered(device_ids)):
            while i >= bounds[wave]:
                wave += 1
            out[d] = wave
        return out
    last = max(assigned.values())
    return {d: assigned.get(d, last) for d in device_ids}
