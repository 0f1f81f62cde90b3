"""The fleet's trust chain, server side: TUF keys (:mod:`.keys`), the repository in the artifact
store (:mod:`.repository`) and the service the server runs (:mod:`.service`, ``fleet.tuf``)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from fleet_server.config import Settings
from fleet_server.errors import ConfigError
from fleet_server.store import ArtifactStore
from fleet_server.trust.keys import INIT_HINT, init_keys, load_online_keys, rotate
from fleet_server.trust.repository import Expiry, TufRepository
from fleet_server.trust.service import TrustService

__all__ = [
    "Expiry",
    "TrustService",
    "TufRepository",
    "init_keys",
    "load_online_keys",
    "rotate",
    "tuf_service",
]


def tuf_service(settings: Settings, store: ArtifactStore, sessions: sessionmaker[Session]) -> TrustService:
    """The trust service for ``settings``. Raises :class:`ConfigError` when no keys are given."""
    if settings.keys_dir is None:
        raise ConfigError(f"no TUF signing keys: {INIT_HINT}")
    expiry = Expiry(timestamp=timedelta(seconds=settings.tuf_timestamp_expiry_s))
    return TrustService(
        settings.keys_dir,
        store,
        sessions,
        settings.data_dir / "tuf-work",
        expiry=expiry,
        interval=settings.tuf_refresh_interval_s,
    )
