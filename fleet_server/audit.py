"""The audit log: one row per mutating API call, written once and never changed
(:mod:`fleet_server.db.append_only`).

:func:`action_name` and :func:`target_of` are pure: they name a call from its method, its route's
path template and what it carried, so every route is covered without code of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.db import AuditEntry, utcnow
from fleet_server.limits import truncate

API_PREFIX = "/api/v1/"
VERBS = {"POST": "create", "PUT": "replace", "PATCH": "update", "DELETE": "delete"}
# Fields of a JSON request or answer that name what a call acted on, in the order tried.
TARGET_FIELDS = ("id", "name", "device_id", "model")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Call:
    """A mutating call as the audit log records it."""

    actor: str
    role: str | None
    method: str
    path: str
    action: str
    target: str | None
    client: str | None
    status: int


def action_name(method: str, template: str | None) -> str:
    """A short name for ``method`` on the route ``template`` (``/api/v1/groups/{name}``):
    the literal segments after ``/api/v1/`` joined by dots, then the verb of the method
    (``groups.update``). A route that ends in a literal below its collection names its own action
    (``POST /api/v1/devices/enroll`` → ``devices.enroll``). Without a route (no route
    matched) the name is ``unrouted``."""
    if template is None or not template.startswith(API_PREFIX):
        return "unrouted"
    segments = [s for s in template[len(API_PREFIX) :].split("/") if s]
    literals = [s for s in segments if not s.startswith("{")]
    if not literals:
        return "unrouted"
    if len(segments) > 1 and not segments[-1].startswith("{") and method == "POST":
        return ".".join(literals)
    return ".".join([*literals, VERBS.get(method, method.lower())])


def _named(doc: Any) -> str | None:
    if not isinstance(doc, Mapping):
        return None
    if "name" in doc and "version" in doc:
        return f"{doc['name']}:{doc['version']}"
    for key in TARGET_FIELDS:
        value = doc.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    nested = doc.get("device")
    return _named(nested) if isinstance(nested, Mapping) else None


def target_of(
    path_params: Mapping[str, Any], request_json: Any = None, answer_json: Any = None
) -> str | None:
    """What a call acted on: its path parameters (``digits:1.0``), else the id or name in its
    answer (a new deployment's id), else the name in its request (what a refused call wanted)."""
    if path_params:
        return ":".join(str(v) for v in path_params.values())
    return _named(answer_json) or _named(request_json)


def record(session: Session, call: Call) -> AuditEntry:
    """Append ``call`` (committed)."""
    entry = AuditEntry(
        at=utcnow(),
        actor=truncate(call.actor, 128),
        role=call.role,
        method=call.method[:8],
        path=truncate(call.path, 512),
        action=truncate(call.action, 128),
        target=None if call.target is None else truncate(call.target, 300),
        client=None if call.client is None else call.client[:64],
        status=call.status,
    )
    session.add(entry)
    session.commit()
    return entry


def list_entries(session: Session, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
    """The newest ``limit`` entries, newest first; with ``before``, those older than that id
    (the next page starts before the last id of this one)."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, MAX_LIMIT)))
    if before is not None:
        q = q.where(AuditEntry.id < before)
    return list(session.scalars(q))
