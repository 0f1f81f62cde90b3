"""The app's API routes as flat rows (method set, path template, path regex, dependency tree),
whichever way the installed FastAPI keeps included routers (newer ones wrap them and expose them
through ``fastapi.routing.iter_route_contexts``). The OpenAPI document reads their roles from it,
and the audit log finds the route a call refused before routing was meant for."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant

try:
    from fastapi.routing import iter_route_contexts as _flatten
except ImportError:  # FastAPI before included routers were wrapped: app.routes is flat already

    def _flatten(routes: Sequence[Any]) -> Iterator[Any]:  # type: ignore[misc]
        return iter(routes)


@dataclass(frozen=True)
class ApiRoute:
    methods: frozenset[str]
    path: str  # the template, as in the OpenAPI document: /api/v1/groups/{name}
    regex: re.Pattern[str]
    dependant: Dependant


def api_routes(app: FastAPI) -> list[ApiRoute]:
    out = []
    for route in _flatten(app.routes):
        dependant = getattr(route, "dependant", None)
        path, regex = getattr(route, "path_format", None), getattr(route, "path_regex", None)
        if isinstance(dependant, Dependant) and path and regex is not None:
            out.append(ApiRoute(frozenset(getattr(route, "methods", None) or ()), path, regex, dependant))
    return out


def calls(dependant: Dependant) -> Iterable[Any]:
    """Every callable in ``dependant``'s tree (its own first)."""
    yield dependant.call
    for sub in dependant.dependencies:
        yield from calls(sub)


def match(routes: Iterable[ApiRoute], method: str, path: str) -> tuple[ApiRoute, dict[str, str]] | None:
    """The route that ``method path`` is for, with its path parameters; ``None`` if none is."""
    for route in routes:
        found = route.regex.match(path)
        if found and method in route.methods:
            return route, found.groupdict()
    return None
