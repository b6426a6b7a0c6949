"""Session events heard on every node: stored with a per-session sequence, NOTIFY to wake.

`ClusterEvents.publish` (sync, as the services call it) queues the event; one
writer task stores what is queued in batches (``session_event_log``, each row
numbered from its session's last number, a unique key on (session, seq), so
two nodes writing one session's events retry rather than share a number)
and notifies ``chargepay_events`` per row, with the event itself when it fits
in a payload. Every node's listener (`heard`) hands the event to its own
subscribers, in whatever order they come; a stream keeps its own last number
and fills any gap with `replay` (`station.api.sessions`), which is also how
``Last-Event-ID`` resumes on any node.

Events a database outage keeps from being stored wait in the queue (bounded:
past ``_OUTBOX_MAX`` the oldest ``meter`` events go first) and are stored
when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from station.logs import get_logger
from station.services.session_events import SessionEvent, SessionEvents

if TYPE_CHECKING:
    from station.cluster.node import ClusterNode

_log = get_logger(__name__)
_BATCH = 200
_OUTBOX_MAX = 50_000
_PAYLOAD_MAX = 7900

_STORE = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
        AS t(session_id, name, data, ord)
), numbered AS (
    SELECT i.session_id, i.name, i.data,
        coalesce((SELECT max(e.seq) FROM session_event_log e WHERE e.session_id = i.session_id), 0)
        + row_number() OVER (PARTITION BY i.session_id ORDER BY i.ord) AS seq
    FROM input i
)
INSERT INTO session_event_log (session_id, seq, name, data, created_at)
SELECT session_id, seq, name, data, now() FROM numbered
RETURNING session_id, seq, name, data
"""


class ClusterEvents(SessionEvents):
    def __init__(
        self,
        node: ClusterNode,
        queue_size: int = 256,
        *,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(queue_size, on_status=on_status)
        self._node = node
        self._outbox: deque[tuple[str, str, str]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def publish(self, session_id: str, name: str, data: dict[str, Any]) -> None:
        if name == "status" and self.on_status is not None:
            self.on_status(str(data.get("status")))
        if len(self._outbox) >= _OUTBOX_MAX:
            self._drop_one_meter()
        self._outbox.append((session_id, name, json.dumps(data, separators=(",", ":"))))
        self._idle.clear()
        self._wake.set()

    def _drop_one_meter(self) -> None:
        for index, item in enumerate(self._outbox):
            if item[1] == "meter":
                del self._outbox[index]
                _log.warning("cluster.event_dropped", session_id=item[0])
                return

    async def run(self, until: asyncio.Event) -> None:
        """Store what is published, until ``until`` is set and the queue is empty."""
        while True:
            if not self._outbox:
                self._idle.set()
                if until.is_set():
                    return
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(until.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            batch = [self._outbox[i] for i in range(min(_BATCH, len(self._outbox)))]
            try:
                await self._store(batch)
            except asyncpg.UniqueViolationError:
                continue  # another node numbered one of these sessions' events: again
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _log.warning("cluster.events_not_stored", error=type(exc).__name__)
                if until.is_set():
                    return
                await asyncio.sleep(0.5)
                continue
            for _ in batch:
                self._outbox.popleft()

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until what was published is stored."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def _store(self, batch: list[tuple[str, str, str]]) -> None:
        pool = self._node.pool
        assert pool is not None
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _STORE, [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch]
            )
            rows = sorted(rows, key=lambda r: (r[0], r[1]))
            payloads = []
            for session_id, seq, name, data in rows:
                payload = f"{session_id}\t{seq}\t{name}\t{data}"
                if len(payload.encode()) > _PAYLOAD_MAX:
                    payload = f"{session_id}\t{seq}"
                payloads.append(payload)
            await conn.execute(
                "SELECT pg_notify('chargepay_events', p) FROM unnest($1::text[]) AS p", payloads
            )

    def heard(self, payload: str) -> None:
        """A stored event, from the listener: hand it to this node's subscribers."""
        parts = payload.split("\t", 3)
        if len(parts) < 2 or not self.wanted(parts[0]):
            return
        session_id, seq = parts[0], int(parts[1])
        if len(parts) == 4:
            self.deliver(session_id, SessionEvent(parts[2], json.loads(parts[3]), seq))
        else:  # too large for a payload: read it
            task = asyncio.ensure_future(self._deliver_stored(session_id, seq))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _deliver_stored(self, session_id: str, seq: int) -> None:
        for event in await self.replay(session_id, seq - 1, upto=seq):
            self.deliver(session_id, event)

    def resync(self) -> None:
        """The listener was re-established: streams fill their gaps on their next event."""

    async def replay(
        self, session_id: str, after: int, *, upto: int | None = None
    ) -> list[SessionEvent]:
        pool = self._node.pool
        if pool is None:
            return []
        rows = await pool.fetch(
            "SELECT seq, name, data FROM session_event_log WHERE session_id = $1 AND seq > $2"
            " AND ($3::int IS NULL OR seq <= $3) ORDER BY seq",
            session_id,
            after,
            upto,
        )
        return [SessionEvent(r[1], json.loads(r[2]), int(r[0])) for r in rows]

    async def last_seq(self, session_id: str) -> int | None:
        pool = self._node.pool
        if pool is None:
            return None
        value = await pool.fetchval(
            "SELECT coalesce(max(seq), 0) FROM session_event_log WHERE session_id = $1",
            session_id,
        )
        return int(value)
