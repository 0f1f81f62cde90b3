"""An ASGI middleware that writes every mutating API call (``POST``, ``PUT``, ``PATCH``,
``DELETE`` under ``/api/``) to the audit log, refused ones included: who (the operator the role
check found, or who it refused), what (method, path, action, target), from where (the client's
address) and the answer's status.

The row is committed before the last byte of the answer is sent, so a client that has its answer
finds the call in the log. Refusals made before the role check runs (413 from
:mod:`~fleet_server.api.body_limit`, a body that isn't JSON) are recorded too, under the route
they were meant for; their operator is found from the ``Authorization`` header here. A failed
audit write is logged, never turned into the caller's error: the call itself has happened by then.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet_server.api.deps import ACTOR_KEY, ANONYMOUS, UNKNOWN, bearer_of, identify
from fleet_server.api.routes import match
from fleet_server.audit import VERBS, Call, action_name, record, target_of
from fleet_server.errors import UnauthorizedError
from fleet_server.fleet import Fleet
from fleet_server.tokens import TokenRefused

log = logging.getLogger(__name__)

CAPTURE_BYTES = 64 * 1024  # enough of a JSON request or answer to find the name it carries


class _Capture:
    """Keeps the first :data:`CAPTURE_BYTES` of a JSON body, and says whether it was all kept."""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        ctype = dict(headers).get(b"content-type", b"")
        self.on = ctype.lower().startswith(b"application/json")
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if self.on:
            self.size += len(chunk)
            if self.size <= CAPTURE_BYTES:
                self.chunks.append(chunk)

    def json(self) -> Any:
        if not self.on or self.size > CAPTURE_BYTES:
            return None
        try:
            return json.loads(b"".join(self.chunks))
        except ValueError:
            return None


class AuditLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        audited = scope.get("method") in VERBS and str(scope.get("path", "")).startswith("/api/")
        if scope["type"] != "http" or not audited:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # request.state writes land in this dict, read below
        asked = _Capture(scope["headers"])
        answer: _Capture | None = None
        status: int | None = None
        recorded = False

        async def tee_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                asked.add(message.get("body", b""))
            return message

        async def tee_send(message: Message) -> None:
            nonlocal answer, status, recorded
            if message["type"] == "http.response.start":
                status = int(message["status"])
                answer = _Capture(list(message.get("headers", [])))
            elif message["type"] == "http.response.body" and answer is not None:
                answer.add(message.get("body", b""))
                if not message.get("more_body", False) and not recorded:
                    recorded = True
                    await self._record(scope, status or 500, asked.json(), answer.json())
            await send(message)

        try:
            await self.app(scope, tee_receive, tee_send)
        except BaseException:
            if not recorded:
                recorded = True
                await self._record(scope, 500 if status is None else status, asked.json(), None)
            raise
        if not recorded:  # the client went away, or nothing was answered
            await self._record(scope, 499 if status is None else status, asked.json(), None)

    async def _record(self, scope: Scope, status: int, asked: Any, answered: Any) -> None:
        try:
            await run_in_threadpool(_write, scope, status, asked, answered)
        except Exception:
            log.exception("writing the audit entry for %s %s failed", scope.get("method"), scope.get("path"))


def _actor(fleet: Fleet, scope: Scope) -> tuple[str, str | None]:
    found = scope.get("state", {}).get(ACTOR_KEY)
    if found is not None:
        name, role = found
        return str(name), role
    authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    if bearer_of(authorization) is None:
        return ANONYMOUS.name, None
    try:
        op = identify(fleet, authorization)
    except TokenRefused as exc:
        return exc.operator.name, exc.operator.role
    except UnauthorizedError:
        return UNKNOWN, None
    return op.name, op.role


def _route_of(scope: Scope) -> tuple[str | None, dict[str, Any]]:
    """The path template of the route that answered, and its path parameters; for a call refused
    before routing (413), those of the route it was meant for."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", None), dict(scope.get("path_params") or {})
    routes = getattr(scope["app"].state, "api_routes", None)
    found = None if routes is None else match(routes, str(scope["method"]), str(scope["path"]))
    return (None, {}) if found is None else (found[0].path, dict(found[1]))


def _write(scope: Scope, status: int, asked: Any, answered: Any) -> None:
    fleet: Fleet = scope["app"].state.fleet
    actor, role = _actor(fleet, scope)
    template, path_params = _route_of(scope)
    method = str(scope["method"])
    client = scope.get("client")
    call = Call(
        actor=actor,
        role=role,
        method=method,
        path=str(scope["path"]),
        action=action_name(method, template),
        target=target_of(path_params, asked, answered if status < 400 else None),
        client=None if not client else str(client[0]),
        status=status,
    )
    with fleet.sessions() as s:
        record(s, call)
