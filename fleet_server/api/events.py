"""``GET /api/v1/events``: the live feed (:mod:`fleet_server.live`) as server-sent events.

A stream opens with ``snapshot`` (the newest deployments and the fleet summary), then sends
``deployment`` (one deployment's summary, when it changed), ``fleet`` (the fleet summary, when it
changed) and ``heartbeat`` (with no other event for ``heartbeat_s``). Every event's data is one
line of compact JSON. The token may come as ``?token=`` (EventSource sends no headers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from fleet_server.api.deps import require_role_or_query_token
from fleet_server.live import CLOSE, LiveFeed, heartbeat

router = APIRouter(tags=["events"])

RETRY_MS = 2000  # how long an EventSource waits before it reconnects


def live_feed(request: Request) -> LiveFeed:
    feed: LiveFeed = request.app.state.live
    return feed


@router.get(
    "/api/v1/events",
    summary="Live deployment and fleet summaries (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    dependencies=[Depends(require_role_or_query_token("viewer"))],
)
async def events(request: Request, feed: LiveFeed = Depends(live_feed)) -> StreamingResponse:
    """``text/event-stream`` of ``snapshot``, then ``deployment``, ``fleet`` and ``heartbeat``
    events; 429 past the bound on open streams (per server and per client address)."""
    client = request.client.host if request.client else "unknown"
    sub = feed.subscribe(client, asyncio.get_running_loop())
    try:
        first = await run_in_threadpool(feed.snapshot)
    except BaseException:
        feed.unsubscribe(sub)
        raise
    limits = feed.limits

    async def stream() -> AsyncIterator[str]:
        ends = time.monotonic() + limits.max_stream_s
        try:
            yield f"retry: {RETRY_MS}\n\n"
            yield first
            while (left := ends - time.monotonic()) > 0:
                item = await sub.next(min(limits.heartbeat_s, left))
                if item is CLOSE:
                    break
                yield item or heartbeat(feed.streams)
        finally:
            feed.unsubscribe(sub)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
