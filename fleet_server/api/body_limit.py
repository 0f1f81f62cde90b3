"""An ASGI middleware that caps the bodies the REST API reads whole: 413 ``too_large`` past
``limit`` bytes, whether or not the client declared a length, and 400 ``invalid_request`` for one
nested deeper than ``max_depth``.

It covers ``/api/`` requests that are not multipart: those are JSON bodies that FastAPI reads into
memory and parses in one go. Model uploads (multipart) stream to disk and are bounded by the store;
the inference endpoints under ``/v2`` carry their own bounds.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet_server.api.errors import error_body
from fleet_server.inbound import json_depth


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int, max_depth: int = 32) -> None:
        self.app, self.limit, self.max_depth = app, limit, max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._covers(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, 413, "too_large", f"request body over {self.limit} bytes")
            return
        # Read it all here, up to the bound (the handler would have), then replay it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send, 413, "too_large", f"request body over {self.limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        # The JSON parser recurses: a deeply nested body would raise RecursionError, a 500.
        depth = json_depth(body)
        if depth > self.max_depth:
            msg = f"request body nested {depth} deep, at most {self.max_depth}"
            await self._refuse(send, 400, "invalid_request", msg)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _covers(scope: Scope) -> bool:
        if not str(scope.get("path", "")).startswith("/api/"):
            return False
        ctype = dict(scope["headers"]).get(b"content-type", b"")
        return not ctype.lower().startswith(b"multipart/")

    @staticmethod
    async def _refuse(send: Send, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
