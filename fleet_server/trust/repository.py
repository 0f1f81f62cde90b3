"""The fleet's TUF repository, built with python-tuf's Metadata API and kept in the artifact
store (directory or S3) under ``tuf/``.

Top-level roles only: root (offline keys, :mod:`fleet_server.trust.keys`), targets, snapshot
and timestamp (online keys the server holds), with consistent snapshots::

    tuf/N.root.json       every root version (devices walk N -> N+1 after a rotation)
    tuf/root.json         the current root
    tuf/N.targets.json    one per targets version; each bundle tar is a target
    tuf/N.snapshot.json   one per snapshot version
    tuf/timestamp.json    the only file that is rewritten in place; written last

A target's path is the bundle's path in the store (``{model}/{version}/{target}-{precision}-
{sha8}.tar``); its ``custom`` field carries the manifest's sha256, model, version, build key
and target, which the agent checks against the manifest it unpacks. Devices download a target
at its consistent-snapshot name, ``{dir}/{sha256}.{file}``, from ``/artifacts/``.

The timestamp carries the time it was signed in ``x-edgefleet-issued`` (a signed field the TUF
spec lets clients ignore); agents without a real-time clock bound their clock below by it
(:mod:`agent.trust.clock`).

One server process writes the repository; a lock serialises the writers within it.
"""

from __future__ import annotations

import logging
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from agent.runtimes import sha256_file
from fleet_server.errors import ConfigError, NotFoundError
from fleet_server.store import ArtifactStore
from fleet_server.trust.keys import OnlineKeys

log = logging.getLogger(__name__)

PREFIX = "tuf"
ISSUED_FIELD = "x-edgefleet-issued"
CUSTOM_FIELDS = ("manifest_sha256", "model", "version", "build_key", "target")


@dataclass(frozen=True)
class Expiry:
    """How long each online role's metadata is valid; it is re-signed when half is left."""

    timestamp: timedelta = timedelta(days=1)
    snapshot: timedelta = timedelta(days=7)
    targets: timedelta = timedelta(days=90)


@dataclass(frozen=True)
class NewTarget:
    """A bundle to sign in: its path, length, sha256 and the custom fields."""

    path: str
    length: int
    sha256: str
    custom: dict[str, Any]


def manifest_sha256_of_tar(tar_path: Path) -> str:
    """The sha256 of the ``manifest.json`` a bundle tar holds (its first member)."""
    import hashlib

    with tarfile.open(tar_path, "r:") as tar:
        member = tar.getmember("manifest.json")
        fh = tar.extractfile(member)
        if fh is None:
            raise ValueError(f"{tar_path}: manifest.json is not a file")
        return hashlib.sha256(fh.read()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class TufRepository:
    """The repository in ``store``, signed with ``keys``. :meth:`open` before anything else."""

    def __init__(
        self,
        store: ArtifactStore,
        keys: OnlineKeys,
        work_dir: Path,
        *,
        expiry: Expiry | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.keys = keys
        self.expiry = expiry or Expiry()
        self._work = work_dir
        self._clock = clock
        self._lock = threading.RLock()
        self.root: Metadata[Root] = keys.root
        self.targets: Metadata[Targets] | None = None
        self.snapshot: Metadata[Snapshot] | None = None
        self.timestamp: Metadata[Timestamp] | None = None

    # -- reading -------------------------------------------------------------------------

    def root_json(self) -> bytes:
        """The current root metadata, as devices get it at enrolment."""
        with self._lock:
            return self._bytes(self.root)

    def has_target(self, path: str) -> bool:
        with self._lock:
            return self.targets is not None and path in self.targets.signed.targets

    def target_paths(self) -> set[str]:
        with self._lock:
            return set() if self.targets is None else set(self.targets.signed.targets)

    # -- writing -------------------------------------------------------------------------

    def open(self) -> None:
        """Load the repository from the store, publish root versions it lacks, and start one
        when there is none. What is loaded is verified with the stored root first, so a store
        someone else wrote to is not re-signed. Raises :class:`ConfigError` when the store's
        root is newer than the keys' or not theirs, or its metadata fails to verify or is
        incomplete (starting over would look like a rollback to every device)."""
        with self._lock:
            self._work.mkdir(parents=True, exist_ok=True)
            stored_root = self._load(f"{PREFIX}/root.json", Root)
            keys_version = self.keys.root.signed.version
            if stored_root is not None and stored_root.signed.version > keys_version:
                raise ConfigError(
                    f"the repository in {self.store.describe()} has root v{stored_root.signed.version}; "
                    f"the keys given have v{keys_version}: point --keys-dir at the current keys"
                )
            if stored_root is not None and (
                stored_root.signed
                != Metadata[Root].from_bytes(self.keys.history[stored_root.signed.version - 1]).signed
            ):
                raise ConfigError(
                    f"the repository in {self.store.describe()} was made with other keys than "
                    f"those in --keys-dir (root v{stored_root.signed.version} differs)"
                )
            trusted = (stored_root or self.keys.root).signed
            for v, data in enumerate(self.keys.history, 1):
                key = f"{PREFIX}/{v}.root.json"
                if not self.store.exists(key):
                    self._put(key, data)
            root_changed = stored_root is None or stored_root.signed.version != keys_version
            self.root = self.keys.root
            self.timestamp = self._load(f"{PREFIX}/timestamp.json", Timestamp, trusted)
            if self.timestamp is not None:
                sv = self.timestamp.signed.snapshot_meta.version
                self.snapshot = self._load(f"{PREFIX}/{sv}.snapshot.json", Snapshot, trusted)
                tv = None if self.snapshot is None else self.snapshot.signed.meta["targets.json"].version
                self.targets = (
                    None if tv is None else self._load(f"{PREFIX}/{tv}.targets.json", Targets, trusted)
                )
                if self.snapshot is None or self.targets is None:
                    raise ConfigError(
                        f"the TUF repository in {self.store.describe()} is incomplete: "
                        f"timestamp v{self.timestamp.signed.version} names snapshot v{sv}, "
                        f"which (or whose targets v{tv}) is missing"
                    )
            if self.targets is None or self.snapshot is None or self.timestamp is None:
                log.info("starting a TUF repository in %s", self.store.describe())
                self.targets = Metadata(Targets(expires=self._clock()))
                self.snapshot = Metadata(Snapshot(expires=self._clock()))
                self.timestamp = Metadata(Timestamp(expires=self._clock()))
                self._publish(targets=True, first=True)
            elif root_changed:
                # New keys (a rotation): re-sign everything with them.
                self._publish(targets=True)
            if root_changed:
                # Last: the stored root is what the next start verifies the other roles with.
                self._put(f"{PREFIX}/root.json", self.keys.history[-1])

    def reload_keys(self, keys: OnlineKeys) -> bool:
        """Take new keys (after ``edgectl keys rotate``): publish the new root versions and
        re-sign every online role. Returns whether anything changed."""
        with self._lock:
            if keys.root.signed.version == self.root.signed.version:
                return False
            if keys.root.signed.version < self.root.signed.version:
                log.error("the key directory holds an older root (v%d); ignored", keys.root.signed.version)
                return False
            self.keys = keys
            self.open()
            log.info("TUF root v%d published; online metadata re-signed", keys.root.signed.version)
            return True

    def add_targets(self, new: Iterable[NewTarget]) -> int:
        """Sign ``new`` bundles into targets (one new targets, snapshot and timestamp version
        for all of them). Returns how many were added."""
        items = list(new)
        with self._lock:
            assert self.targets is not None, "open() first"
            for t in items:
                self.targets.signed.targets[t.path] = TargetFile(
                    t.length, {"sha256": t.sha256}, t.path, {"custom": dict(t.custom)}
                )
            if items:
                self._publish(targets=True)
        return len(items)

    def refresh(self, force: bool = False) -> bool:
        """Re-sign whatever has less than half its validity left (``force``: the timestamp
        anyway). Returns whether anything was signed."""
        with self._lock:
            assert self.targets and self.snapshot and self.timestamp, "open() first"
            now = self._clock()
            targets = self._due(self.targets.signed.expires, self.expiry.targets, now)
            snapshot = targets or self._due(self.snapshot.signed.expires, self.expiry.snapshot, now)
            timestamp = (
                force or snapshot or self._due(self.timestamp.signed.expires, self.expiry.timestamp, now)
            )
            if timestamp:
                self._publish(targets=targets, snapshot=snapshot)
            return timestamp

    @staticmethod
    def _due(expires: datetime, period: timedelta, now: datetime) -> bool:
        return expires - now < period / 2

    def _publish(self, *, targets: bool = False, snapshot: bool = False, first: bool = False) -> None:
        """Bump, sign and store: targets (if asked), snapshot (if asked or targets changed),
        then the timestamp, last, so a reader never sees a timestamp naming files not there."""
        assert self.targets and self.snapshot and self.timestamp
        now = self._clock()
        bump = 0 if first else 1  # a new repository starts every role at version 1
        if targets:
            t = self.targets.signed
            t.version += bump
            t.expires = now + self.expiry.targets
            self.targets.sign(self.keys.signers["targets"])
            self._put(f"{PREFIX}/{t.version}.targets.json", self._bytes(self.targets))
        if targets or snapshot:
            s = self.snapshot.signed
            s.version += bump
            s.expires = now + self.expiry.snapshot
            s.meta["targets.json"] = MetaFile(version=self.targets.signed.version)
            self.snapshot.sign(self.keys.signers["snapshot"])
            self._put(f"{PREFIX}/{s.version}.snapshot.json", self._bytes(self.snapshot))
        ts = self.timestamp.signed
        ts.version += bump
        ts.expires = now + self.expiry.timestamp
        ts.snapshot_meta = MetaFile(version=self.snapshot.signed.version)
        ts.unrecognized_fields[ISSUED_FIELD] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.timestamp.sign(self.keys.signers["timestamp"])
        self._put(f"{PREFIX}/timestamp.json", self._bytes(self.timestamp))

    # -- store I/O -----------------------------------------------------------------------

    @staticmethod
    def _bytes(md: Metadata[Any]) -> bytes:
        return md.to_bytes(JSONSerializer(compact=True))

    def _put(self, key: str, data: bytes) -> None:
        with tempfile.NamedTemporaryFile(dir=self._work, suffix=".json") as fh:
            fh.write(data)
            fh.flush()
            self.store.put_file(key, Path(fh.name))

    def _load(self, key: str, kind: type[Any], trusted: Root | None = None) -> Any:
        """The metadata at ``key`` (``None`` when absent), checked to be of ``kind`` and, given
        ``trusted``, signed by its keys for that role. Raises :class:`ConfigError`."""
        try:
            with self.store.open(key) as fh:
                data = fh.read()
        except NotFoundError:
            return None
        try:
            md: Metadata[Any] = Metadata.from_bytes(data)
            if not isinstance(md.signed, kind):
                raise ValueError(f"holds {md.signed.type} metadata")
            if trusted is not None:
                trusted.verify_delegate(md.signed.type, md.signed_bytes, md.signatures)
        except Exception as exc:
            raise ConfigError(
                f"{key} in {self.store.describe()} does not verify ({exc}); it was not written by "
                "this repository's keys: restore it from a backup"
            ) from exc
        return md


def new_target_from_tar(path: str, tar: Path, custom: dict[str, Any]) -> NewTarget:
    """A :class:`NewTarget` for the bundle tar at ``tar`` (its length, sha256 and manifest)."""
    fields = {"manifest_sha256": manifest_sha256_of_tar(tar), **custom}
    return NewTarget(path, tar.stat().st_size, sha256_file(tar), fields)
