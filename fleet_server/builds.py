"""Compiling ahead of a rollout: the bundles some device profiles need, requested now."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from sqlalchemy.orm import Session

from device_profiles import DeviceProfile
from fleet_server.build_settings import build_key
from fleet_server.db import Bundle
from fleet_server.errors import NotFoundError
from fleet_server.queries import ensure_bundle
from fleet_server.states import BundleStatus

log = logging.getLogger(__name__)


def request_builds(
    session: Session, mv_id: int, names: Iterable[str], profiles: Mapping[str, DeviceProfile]
) -> list[Bundle]:
    """The bundles ``names`` (device profiles) need for model version ``mv_id``, created
    ``pending`` where missing (compile ahead of a rollout). A ``failed`` one is put back to
    ``pending`` so it is compiled again: a compile can fail for a passing reason (store error,
    converter timeout), and this is how an operator retries it. Unknown profiles:
    ``NotFoundError`` naming the known ones."""
    out: dict[int, Bundle] = {}
    for name in names:
        prof = profiles.get(name)
        if prof is None:
            raise NotFoundError(f"unknown profile {name!r} (known: {', '.join(sorted(profiles))})")
        bundle = ensure_bundle(session, mv_id, build_key(prof), prof.name)
        if bundle.status == BundleStatus.FAILED.value:
            log.info("bundle %s failed before (%s); compiling it again", bundle.id, bundle.error)
            bundle.status = BundleStatus.PENDING.value
            bundle.error = None
            bundle.started_at = bundle.finished_at = None
        out[bundle.id] = bundle
    return list(out.values())
