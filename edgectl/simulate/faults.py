"""The faults a simulated fleet can be told to show, and which devices show them (pure).

Every choice is a hash of the seed and the device id, never a random draw, so the same seed gives
the same failing, offline and unresponsive devices on every run and in every process, whatever
order the devices register or update in. Each choice hashes with its own salt, so a device's
chance of failing is independent of its chance of being offline.

What "new" means: a model version fails, runs slower or predicts differently only when it is not
the first version the device ran, or, for failures, one it has never run before (``fail_versions``
narrows that to the versions named). So a roll back to the version a device ran first always
works and shows that version's figures again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from agent.contracts.state import ErrorCode, UpdateState

S = UpdateState

# Where in the update each failure shows, as the agent meets it (agent/update/reconciler.py):
# a download failure ends the update at once; every later one rolls back.
FAIL_AT: dict[ErrorCode, UpdateState] = {
    ErrorCode.DOWNLOAD_FAILED: S.DOWNLOADING,
    ErrorCode.DISK_FULL: S.DOWNLOADING,
    ErrorCode.SIZE_MISMATCH: S.VERIFYING,
    ErrorCode.HASH_MISMATCH: S.VERIFYING,
    ErrorCode.SIGNATURE_INVALID: S.VERIFYING,
    ErrorCode.BUNDLE_INVALID: S.INSTALLING,
    ErrorCode.INCOMPATIBLE: S.INSTALLING,
    ErrorCode.RUNTIME_UNAVAILABLE: S.LOADING,
    ErrorCode.LOAD_FAILED: S.LOADING,
    ErrorCode.SELF_TEST_FAILED: S.SELF_TEST,
    ErrorCode.INTERNAL: S.SELF_TEST,
}


def unit(seed: int, *parts: str) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``parts`` (sha256, so stable across processes,
    unlike ``hash()``)."""
    h = hashlib.sha256("\x1f".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def _share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, not {value:g}")


@dataclass(frozen=True)
class Faults:
    """The knobs. Shares and rates are between 0 and 1; ``latency_regression`` multiplies the p95
    and p99 latency of new versions (1: no change); ``prediction_shift`` moves that share of the
    predicted-class mass onto one class for new versions; ``error_rate`` is the share of requests
    that fail on new versions. Raises ``ValueError`` for a value out of range."""

    fail_rate: float = 0.0
    fail_codes: tuple[ErrorCode, ...] = (ErrorCode.SELF_TEST_FAILED,)
    fail_versions: frozenset[str] = field(default_factory=frozenset)
    latency_regression: float = 1.0
    prediction_shift: float = 0.0
    error_rate: float = 0.0
    offline_share: float = 0.0
    unresponsive_share: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("fail_rate", "prediction_shift", "error_rate", "offline_share", "unresponsive_share"):
            _share(name, getattr(self, name))
        if self.latency_regression <= 0:
            raise ValueError(f"latency_regression must be positive, not {self.latency_regression:g}")
        if not self.fail_codes:
            raise ValueError("fail_codes must name at least one error code")
        unknown = [c for c in self.fail_codes if c not in FAIL_AT]
        if unknown:
            raise ValueError(f"no failure step for error code(s) {', '.join(map(str, unknown))}")

    # -- which devices ---------------------------------------------------------------------------

    def offline(self, device_id: str) -> bool:
        """Registers, then never connects: no status, no reports, no telemetry."""
        return unit(self.seed, "offline", device_id) < self.offline_share

    def unresponsive(self, device_id: str) -> bool:
        """Connects and says it is online, then never answers a desired state or sends telemetry."""
        return not self.offline(device_id) and unit(self.seed, "mute", device_id) < self.unresponsive_share

    def failing(self, device_id: str) -> bool:
        """Whether this device fails the new versions it is given."""
        return unit(self.seed, "fail", device_id) < self.fail_rate

    def failure(self, device_id: str, ref: str, ran: frozenset[str] | set[str]) -> ErrorCode | None:
        """The error code the update of ``device_id`` to ``ref`` (``name:version``) fails with, or
        ``None`` when it succeeds. ``ran`` holds the refs the device has run before."""
        if ref in ran or not self.failing(device_id):
            return None
        if self.fail_versions:
            version = ref.rpartition(":")[2]
            if ref not in self.fail_versions and version not in self.fail_versions:
                return None
        pick = int(unit(self.seed, "code", device_id) * len(self.fail_codes))
        return self.fail_codes[pick]
