"""Compile targets by name, from the ``edgefleet.compilers`` entry-point group (built-ins are
registered there the same way a plug-in is, :data:`agent.contracts.names.TARGETS`); unknown names
are refused with the known ones."""

from __future__ import annotations

from agent.contracts.names import TARGETS
from agent.contracts.plugins import PluginError
from compilers.base import Target
from compilers.errors import TargetError


def known_targets() -> list[str]:
    return TARGETS.names()


def get_target(name: str) -> Target:
    """A fresh instance of the target ``name``. Raises :class:`TargetError` naming the known ones."""
    try:
        return TARGETS.load(name, Target)()
    except PluginError as exc:
        raise TargetError(str(exc)) from exc
