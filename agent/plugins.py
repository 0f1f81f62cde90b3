"""Plug-ins by name from an entry-point group, built-ins registered the same way.

Used for runtime adapters (``edgefleet.runtimes``) and, on the server side, compiler targets
(``edgefleet.compilers``). A name registered twice with different code is refused; an unknown
name is refused with the list of known ones.
"""

from __future__ import annotations

from functools import cached_property
from importlib import import_module
from importlib.metadata import entry_points


class PluginError(LookupError):
    """An unknown or clashing plug-in name, or a spec that is not the expected class."""


class Registry:
    """``group``: the entry-point group; ``builtin``: name → ``module:attr`` for running from a
    source tree that was never installed (then no entry points exist)."""

    def __init__(self, group: str, builtin: dict[str, str], what: str) -> None:
        self.group = group
        self._builtin = dict(builtin)
        self.what = what

    @cached_property
    def specs(self) -> dict[str, str]:
        specs = dict(self._builtin)
        for ep in entry_points(group=self.group):
            if ep.name in specs and specs[ep.name] != ep.value:
                twice = f"{specs[ep.name]} and {ep.value}"
                raise PluginError(f"{self.what} {ep.name!r} is registered twice ({twice})")
            specs[ep.name] = ep.value
        return specs

    def names(self) -> list[str]:
        return sorted(self.specs)

    def load(self, name: str, base: type) -> type:
        """The class registered as ``name``; raises :class:`PluginError`."""
        spec = self.specs.get(name)
        if spec is None:
            raise PluginError(f"unknown {self.what} {name!r} (known: {', '.join(self.names())})")
        module, _, attr = spec.partition(":")
        cls = getattr(import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{spec} is not a {base.__name__}")
        return cls
