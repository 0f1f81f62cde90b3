"""``fleet.tuf``: the repository, its keys and the background refresher, as the server runs them.

Every ``interval`` seconds the refresher (one daemon thread):

1. re-reads the key directory's ``root.json``; a newer version (``edgectl keys rotate``) is
   published and every online role re-signed with the new keys;
2. signs in any ``ready`` bundle that is not a target yet (bundles the compile worker stored
   are signed before they turn ready; this catches older ones);
3. re-signs timestamp (and snapshot, targets) metadata with less than half its validity left.

``POST /api/v1/tuf/refresh`` (admin) runs one pass at once.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db import Bundle, ModelVersion
from fleet_server.states import BundleStatus
from fleet_server.store import ArtifactStore
from fleet_server.trust.keys import load_online_keys
from fleet_server.trust.repository import Expiry, NewTarget, TufRepository, new_target_from_tar

log = logging.getLogger(__name__)
ROOT_WARNING = timedelta(days=30)  # warn this long before the root metadata expires


def bundle_custom(name: str, version: str, target: str, build_key: str) -> dict[str, Any]:
    """The custom fields of a bundle's target, but for ``manifest_sha256``."""
    return {"model": name, "version": version, "build_key": build_key, "target": target}


class TrustService:
    def __init__(
        self,
        keys_dir: Path,
        store: ArtifactStore,
        sessions: sessionmaker[Session],
        work_dir: Path,
        *,
        expiry: Expiry | None = None,
        interval: float = 60.0,
    ) -> None:
        self.keys_dir = keys_dir
        self._store = store
        self._sessions = sessions
        self._work = work_dir
        self.repo = TufRepository(store, load_online_keys(keys_dir), work_dir, expiry=expiry)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def root_json(self) -> bytes:
        """The current root metadata (what an enrolling device is given)."""
        return self.repo.root_json()

    def start(self) -> None:
        self.repo.open()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="tuf-refresher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def sign_bundle(self, path: str, tar: Path, name: str, version: str, target: str, build_key: str) -> None:
        """Sign a freshly stored bundle tar in (called before the bundle turns ready)."""
        self.repo.add_targets(
            [new_target_from_tar(path, tar, bundle_custom(name, version, target, build_key))]
        )

    def refresh(self, force: bool = False) -> None:
        """One refresher pass (see the module docstring). Never raises."""
        try:
            keys = load_online_keys(self.keys_dir)
            self.repo.reload_keys(keys)
        except Exception as exc:
            log.error("TUF keys in %s unusable, keeping the loaded ones: %s", self.keys_dir, exc)
        try:
            self.sync_bundles()
        except Exception:
            log.exception("signing ready bundles into the TUF repository failed")
        try:
            self.repo.refresh(force)
        except Exception:
            log.exception("re-signing TUF metadata failed")
        left = self.repo.root.signed.expires - datetime.now(UTC)
        if left < ROOT_WARNING:
            log.warning(
                "TUF root v%d expires in %s: renew it (`edgectl keys rotate ROLE` signs a new root)",
                self.repo.root.signed.version,
                left,
            )

    def sync_bundles(self) -> int:
        """Sign in the ready bundles that are not targets yet. Returns how many."""
        known = self.repo.target_paths()
        with self._sessions() as s:
            rows = s.execute(
                select(
                    Bundle.target_path,
                    Bundle.target,
                    Bundle.settings_key,
                    ModelVersion.name,
                    ModelVersion.version,
                )
                .join(ModelVersion, Bundle.model_version_id == ModelVersion.id)
                .where(Bundle.status == BundleStatus.READY.value, Bundle.target_path.is_not(None))
            ).all()
        new: list[NewTarget] = []
        for path, target, key, name, version in rows:
            if path is None or path in known:
                continue
            try:
                with tempfile.TemporaryDirectory(dir=self._work) as tmp:
                    local = Path(tmp) / "bundle.tar"
                    with self._store.open(path) as src, open(local, "wb") as out:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
                    custom = bundle_custom(name, version, target, key)
                    new.append(new_target_from_tar(path, local, custom))
            except Exception as exc:  # one unreadable bundle must not keep the others unsigned
                log.error("cannot sign bundle %s into the TUF repository: %s", path, exc)
        return self.repo.add_targets(new)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()
