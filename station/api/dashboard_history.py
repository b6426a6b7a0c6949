"""The chart's memory: the meter points of recent sessions, exactly as the station published them.

`SessionHistory.follow` drains the operator-wide subscription
(`SessionEvents.subscribe_all`) for as long as the station runs, keeping each
``meter`` event's time, power, energy and cost (the running cost billing
computed, not a recomputation) for the last ``sessions`` sessions, at most
``points`` each. So a dashboard opened mid-session, or a click on a settled
session, draws its whole chart. In memory, on this node, since it started:
a restart forgets it, and the chart then starts at the next meter value.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from typing import Any

from station.logs import get_logger
from station.services.session_events import SessionEvent, SessionEvents

_log = get_logger(__name__)

POINT_FIELDS = ("at", "power_kw", "energy_kwh", "cost", "cap", "currency")


class SessionHistory:
    def __init__(self, sessions: int = 200, points: int = 1000) -> None:
        self._max_sessions = sessions
        self._max_points = points
        self._points: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()

    def record(self, session_id: str, event: SessionEvent) -> None:
        if event.name != "meter":
            return
        points = self._points.get(session_id)
        if points is None:
            points = self._points[session_id] = deque(maxlen=self._max_points)
            while len(self._points) > self._max_sessions:
                self._points.popitem(last=False)
        else:
            self._points.move_to_end(session_id)
        points.append({name: event.data.get(name) for name in POINT_FIELDS})

    def _record_safely(self, session_id: str, event: SessionEvent) -> None:
        """A point the chart cannot keep is logged and skipped: never the station's problem."""
        try:
            self.record(session_id, event)
        except Exception:
            _log.exception("dashboard.history_record_failed", session_id=session_id)

    def points(self, session_id: str) -> list[dict[str, Any]]:
        return list(self._points.get(session_id, ()))

    async def follow(self, events: SessionEvents, until: asyncio.Event) -> None:
        """Record every session event until ``until`` is set. Safe to cancel."""
        stop = asyncio.ensure_future(until.wait())
        get: asyncio.Future[tuple[str, SessionEvent]] | None = None
        try:
            async with events.subscribe_all() as queue:
                while True:
                    get = asyncio.ensure_future(queue.get())
                    await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if not get.done():
                        return
                    self._record_safely(*get.result())
                    while not queue.empty():
                        self._record_safely(*queue.get_nowait())
        finally:
            for waiter in (stop, get):
                if waiter is not None and not waiter.done():
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
