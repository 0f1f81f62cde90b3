"""Plug-ins by name from an entry-point group, built-ins registered the same way.

Two registries use it (:mod:`agent.contracts.names`): runtime adapters (``edgefleet.runtimes``)
and compiler targets (``edgefleet.compilers``). A name registered twice with different code is
refused; an unknown name is refused with the list of known ones.

It sits with the contracts because the names it knows are part of the contract: a manifest, a
profile or a desired state that names an unregistered target or runtime is invalid. Reading names
imports nothing (entry points are metadata); only :meth:`Registry.load` imports the plug-in's
module, so the device and the server can both ask for names without loading each other's code.
"""

from __future__ import annotations

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
        self._specs: dict[str, str] | None = None
        self._classes: dict[str, type] = {}  # registered in-process with :meth:`register`

    @property
    def specs(self) -> dict[str, str]:
        """Every name with its ``module:attr`` spec. Raises :class:`PluginError` for a name that
        two entry points give different code."""
        if self._specs is None:
            specs = dict(self._builtin)
            for ep in entry_points(group=self.group):
                if ep.name in specs and specs[ep.name] != ep.value:
                    twice = f"{specs[ep.name]} and {ep.value}"
                    raise PluginError(f"{self.what} {ep.name!r} is registered twice ({twice})")
                specs[ep.name] = ep.value
            specs.update({name: _spec(cls) for name, cls in self._classes.items()})
            self._specs = specs
        return self._specs

    def names(self) -> list[str]:
        return sorted(self.specs)

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def unknown(self, name: str) -> str:
        """The one line that refuses ``name``: ``unknown target 'x' (known: a, b)``."""
        return f"unknown {self.what} {name!r} (known: {', '.join(self.names())})"

    def register(self, name: str, cls: type) -> None:
        """Add a plug-in from inside this process, as an entry point does for an installed
        package (tests, embedding). Raises :class:`PluginError` when ``name`` is taken by other code."""
        have = self.specs.get(name)
        if have is not None and have != _spec(cls):
            raise PluginError(f"{self.what} {name!r} is registered twice ({have} and {_spec(cls)})")
        self._classes[name] = cls
        self._specs = None

    def unregister(self, name: str) -> None:
        """Drop a plug-in added with :meth:`register` (entry points and built-ins stay)."""
        if self._classes.pop(name, None) is not None:
            self._specs = None

    def load(self, name: str, base: type) -> type:
        """The class registered as ``name``; raises :class:`PluginError`."""
        spec = self.specs.get(name)
        if spec is None:
            raise PluginError(self.unknown(name))
        cls = self._classes.get(name)
        if cls is None:
            module, _, attr = spec.partition(":")
            cls = getattr(import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{spec} is not a {base.__name__}")
        return cls


def _spec(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
