"""The audit log is append-only: the ORM refuses to update or delete its rows.

Two ways lead there in SQLAlchemy, and both are closed: a loaded row changed or deleted and
flushed (mapper events), and an ``update()``/``delete()`` statement run through a session (the
``do_orm_execute`` session event). The database refuses the same with triggers
(migration 0004), so plain SQL is held to it too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from fleet_server.db.models import AuditEntry


class AppendOnlyError(RuntimeError):
    """An attempt to change or remove an audit row."""


def _refuse(*_: Any) -> None:
    raise AppendOnlyError("the audit log is append-only: its rows can't be changed or deleted")


def _refuse_bulk(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is not None and mapper.class_ is AuditEntry:
        _refuse()


def install() -> None:
    """Register the guards (idempotent; done when :mod:`fleet_server.db` is imported)."""
    if not event.contains(AuditEntry, "before_update", _refuse):
        event.listen(AuditEntry, "before_update", _refuse)
        event.listen(AuditEntry, "before_delete", _refuse)
    if not event.contains(Session, "do_orm_execute", _refuse_bulk):
        event.listen(Session, "do_orm_execute", _refuse_bulk)
