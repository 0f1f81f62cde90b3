"""The live feed behind ``GET /api/v1/events``: one polling thread for the whole server, fanning
server-sent events out to every open stream.

While at least one stream is open, the thread looks at the database every ``poll_s``: the live
deployments (not ROLLED_BACK or SUPERSEDED, plus those it passed on last time and any new ones),
and every ``fleet_every_s`` the fleet summary (``GROUP BY``). What changed
(:mod:`fleet_server.live.changes`) is framed once and queued to every stream. With no stream
open it reads nothing. Costs grow with the live deployments, never with the devices.

Bounds (:class:`FeedLimits`): at most ``max_streams`` streams, ``max_streams_per_client`` from
one client address (:class:`~fleet_server.errors.BusyError` past either); a stream that falls
``queue_events`` events behind is closed (its EventSource reconnects and starts from a fresh
snapshot); a stream ends after ``max_stream_s`` (the same). A stream ends when its client goes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from fleet_server.db import Deployment
from fleet_server.errors import BusyError
from fleet_server.fleet_summary import fleet_summary
from fleet_server.live.changes import ChangeTracker, frame
from fleet_server.states import FINAL_DEPLOYMENT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedLimits:
    poll_s: float = 0.5
    fleet_every_s: float = 2.0
    heartbeat_s: float = 15.0
    max_streams: int = 64
    max_streams_per_client: int = 8
    queue_events: int = 1000
    max_stream_s: float = 3600.0
    recent: int = 20  # deployments in a stream's first snapshot, newest first


CLOSE = None  # queued to a stream: end it


class Subscription:
    """One open stream: frames queued by the feed's thread onto the stream's event loop."""

    def __init__(self, client: str, loop: asyncio.AbstractEventLoop, max_queue: int) -> None:
        self.client = client
        self.closed = False
        self._loop = loop
        self._max = max_queue
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def offer(self, item: str | None) -> bool:
        """Queue ``item`` from any thread; ``False`` when the stream's loop is gone."""
        try:
            self._loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # its loop has closed
            return False
        return True

    def _put(self, item: str | None) -> None:
        if self.closed:
            return
        if item is CLOSE or self._queue.qsize() >= self._max:
            self.closed = True
            self._queue.put_nowait(CLOSE)
            return
        self._queue.put_nowait(item)

    async def next(self, timeout: float) -> str | None:
        """The next frame, ``""`` after ``timeout`` s with none, :data:`CLOSE` at the end."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return ""


class LiveFeed:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        summarize: Callable[[Deployment], dict[str, Any]],
        limits: FeedLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or FeedLimits()
        self._sessions = sessions
        self._summarize = summarize  # a deployment row → its summary (the REST list's shape)
        self._clock = clock
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._tracker = ChangeTracker()
        self._max_id = 0
        self.looks = 0  # database looks so far (tests and metrics)

    @property
    def streams(self) -> int:
        with self._lock:
            return len(self._subs)

    def subscribe(self, client: str, loop: asyncio.AbstractEventLoop) -> Subscription:
        """A new stream for ``client`` (its address). Raises :class:`BusyError` past the caps."""
        lim = self.limits
        with self._lock:
            if self._stopped:
                raise BusyError("the server is shutting down; retry against another replica or later")
            if len(self._subs) >= lim.max_streams:
                raise BusyError(
                    f"{lim.max_streams} event streams are open, the most this server keeps; retry later"
                )
            per_client = Counter(s.client for s in self._subs)[client]
            if per_client >= lim.max_streams_per_client:
                raise BusyError(
                    f"{per_client} event streams are open from {client}, the most one client may have; "
                    "close one (a dashboard tab) and retry"
                )
            sub = Subscription(client, loop, lim.queue_events)
            self._subs.add(sub)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)
                self._thread.start()
            self._wake.notify_all()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def snapshot(self) -> str:
        """A stream's first event: the newest deployments and the fleet summary."""
        with self._sessions() as s:
            deps = s.scalars(
                select(Deployment)
                .options(selectinload(Deployment.model_version))
                .order_by(Deployment.id.desc())
                .limit(self.limits.recent)
            )
            data = {"deployments": [self._summarize(d) for d in deps], "fleet": fleet_summary(s)}
        return frame("snapshot", data)

    def stop(self) -> None:
        """End every stream and the thread. Never raises."""
        with self._lock:
            self._stopped = True
            subs, self._subs = list(self._subs), set()
            self._wake.notify_all()
            thread = self._thread
        for sub in subs:
            sub.offer(CLOSE)
        if thread is not None:
            thread.join(timeout=5)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        next_fleet = 0.0
        while True:
            with self._lock:
                while not self._subs and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
            started = self._clock()
            try:
                frames = self._look(fleet=started >= next_fleet)
            except Exception:  # a database hiccup: streams go on, the next look tries again
                log.exception("live feed: reading the database failed")
                frames = []
            if started >= next_fleet:
                next_fleet = started + self.limits.fleet_every_s
            if frames:
                self._broadcast(frames)
            with self._lock:
                self._wake.wait(max(0.0, self.limits.poll_s - (self._clock() - started)))

    def _look(self, fleet: bool) -> list[str]:
        self.looks += 1
        with self._sessions() as s:
            q = (
                select(Deployment)
                .options(selectinload(Deployment.model_version))
                .where(
                    or_(
                        Deployment.state.notin_([st.value for st in FINAL_DEPLOYMENT]),
                        Deployment.id.in_(self._tracker.live_ids),
                        Deployment.id > self._max_id,
                    )
                )
                .order_by(Deployment.id)
            )
            summaries = [self._summarize(d) for d in s.scalars(q)]
            fleet_data = fleet_summary(s) if fleet else None
        if summaries:
            self._max_id = max(self._max_id, max(int(d["id"]) for d in summaries))
        frames = [frame("deployment", d) for d in self._tracker.deployments(summaries)]
        if fleet_data is not None and (changed := self._tracker.fleet(fleet_data)) is not None:
            frames.append(frame("fleet", changed))
        return frames

    def _broadcast(self, frames: list[str]) -> None:
        with self._lock:
            subs = list(self._subs)
        gone = [sub for sub in subs if not all(sub.offer(f) for f in frames)]
        if gone:
            with self._lock:
                self._subs.difference_update(gone)


def heartbeat(streams: int) -> str:
    return frame("heartbeat", {"t": round(time.time(), 3), "streams": streams})
