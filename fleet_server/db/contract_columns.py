"""Column types that store wire contracts as JSON and hand back the typed objects.

The desired and reported states (and the error a device reported), and a group's serving and
offload policies, are written and read as
:mod:`agent.contracts` objects everywhere in the server; this is the one place they become JSON
for the database and are parsed back. A stored value that no longer parses (written by hand, or by
a server that understood another schema) reads as ``None`` with a warning: one bad row must not
stop a rollout pass or a device view, and the next report or desired state overwrites it.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import JSON, Dialect
from sqlalchemy.types import TypeDecorator

from agent.contracts import ContractError, DesiredState, ReportedError, ReportedState
from agent.contracts.policy import ServingPolicy
from fleet_server.rollout.policy import GroupOffload
from fleet_server.rollout.spec import RolloutSpec

log = logging.getLogger(__name__)

T = TypeVar("T")


class _ContractJSON(TypeDecorator[T], Generic[T]):
    """A JSON column holding one contract type (``contract``, read and written through the
    contracts' own codec); ``None`` is SQL NULL."""

    impl = JSON(none_as_null=True)
    contract: ClassVar[type[Any]]
    where: ClassVar[str | None] = None  # how a read error names the value

    def process_bind_param(self, value: T | None, dialect: Dialect) -> dict[str, Any] | None:
        return None if value is None else cast(dict[str, Any], value.to_dict())  # type: ignore[attr-defined]

    def process_result_value(self, value: Any, dialect: Dialect) -> T | None:
        if value is None:
            return None
        try:
            return cast(T, self.contract.from_dict(value, self.where))
        except ContractError as exc:
            log.warning("stored %s unreadable, read as none: %s", type(self).__name__, exc)
            return None


class DesiredStateJSON(_ContractJSON[DesiredState]):
    cache_ok = True  # SQLAlchemy reads it from each class itself; these hold no state
    contract = DesiredState


class ReportedStateJSON(_ContractJSON[ReportedState]):
    cache_ok = True  # SQLAlchemy reads it from each class itself; these hold no state
    contract = ReportedState


class ReportedErrorJSON(_ContractJSON[ReportedError]):
    cache_ok = True  # SQLAlchemy reads it from each class itself; these hold no state
    contract = ReportedError
    where = "error"


class ServingPolicyJSON(_ContractJSON[ServingPolicy]):
    cache_ok = True  # SQLAlchemy reads it from each class itself; these hold no state
    contract = ServingPolicy


class GroupOffloadJSON(_ContractJSON[GroupOffload]):
    cache_ok = True  # SQLAlchemy reads it from each class itself; these hold no state
    contract = GroupOffload


class RolloutSpecJSON(_ContractJSON[RolloutSpec]):
    cache_ok = True  # SQLAlchemy reads it from each class itself; these hold no state
    contract = RolloutSpec
