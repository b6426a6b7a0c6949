"""Per-session event fan-out for the agent's Server-Sent Events stream.

In-process: subscribers of this node hear what this node publishes (the
node that runs a charge point's connection meters and settles its
sessions). A subscriber's queue is bounded; a slow reader loses the oldest
``meter`` events, never the final ``settled``. `subscribe_all` hears every
session's events, each with its session id (the operator's stream).

With several nodes on one PostgreSQL, `station.cluster.events.ClusterEvents`
replaces it: every event is stored with a per-session sequence (`SessionEvent.seq`)
and heard on every node, and `replay` gives what a stream missed (``Last-Event-ID``).
Here ``seq`` is None and there is nothing to replay.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SessionEvent:
    name: str  # meter | status | settled
    data: dict[str, Any]
    # The event's number within its session, from 1 (stored events only).
    seq: int | None = None


class SessionEvents:
    def __init__(
        self, queue_size: int = 256, *, on_status: Callable[[str], None] | None = None
    ) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Queue[SessionEvent]]] = defaultdict(set)
        self._queue_size = queue_size
        self._everything: set[asyncio.Queue[tuple[str, SessionEvent]]] = set()
        # Hears every status a session of this node enters (metrics).
        self.on_status = on_status

    def publish(self, session_id: str, name: str, data: dict[str, Any]) -> None:
        """Every status change is published as a ``status`` event (subscribers or not)."""
        if name == "status" and self.on_status is not None:
            self.on_status(str(data.get("status")))
        self.deliver(session_id, SessionEvent(name, data))

    def deliver(self, session_id: str, event: SessionEvent) -> None:
        """Hand an event to this node's subscribers (oldest dropped from a full queue)."""
        for queue in list(self._subscribers.get(session_id, ())):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
        for everything in list(self._everything):
            if everything.full():
                everything.get_nowait()
            everything.put_nowait((session_id, event))

    def wanted(self, session_id: str) -> bool:
        """Does anyone on this node listen to this session (or to every session)?"""
        return bool(self._everything) or session_id in self._subscribers

    async def replay(
        self, session_id: str, after: int, *, upto: int | None = None
    ) -> list[SessionEvent]:
        """The session's stored events numbered above ``after`` (to ``upto``), in order."""
        return []

    async def last_seq(self, session_id: str) -> int | None:
        """The number of the session's latest stored event (None: events are not stored)."""
        return None

    @asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[asyncio.Queue[SessionEvent]]:
        queue: asyncio.Queue[SessionEvent] = asyncio.Queue(self._queue_size)
        self._subscribers[session_id].add(queue)
        try:
            yield queue
        finally:
            self._subscribers[session_id].discard(queue)
            if not self._subscribers[session_id]:
                del self._subscribers[session_id]

    @asynccontextmanager
    async def subscribe_all(
        self, queue_size: int = 1024
    ) -> AsyncIterator[asyncio.Queue[tuple[str, SessionEvent]]]:
        """Every session's events on this node, as ``(session_id, event)``; oldest dropped."""
        queue: asyncio.Queue[tuple[str, SessionEvent]] = asyncio.Queue(queue_size)
        self._everything.add(queue)
        try:
            yield queue
        finally:
            self._everything.discard(queue)
