"""Follow a session to its end: Server-Sent Events, falling back to polling.

`follow_session` listens to `GET /v1/sessions/{id}/events` (`meter`,
`status`, `settled`) and, when the stream is refused, breaks or ends, polls
`GET /v1/sessions/{id}` until the session is terminal (`settled`,
`cancelled`, `failed`). It asks the station to stop once (`POST …/stop`)
when `stop_at_kwh` is reached. Every update goes to `on_update`. The whole
follow runs under `deadline_s`; safe to cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from vehicle.client import TERMINAL, SessionView, StationClient
from vehicle.errors import Conflict, ProtocolViolation, StationError, StationUnavailable
from vehicle.logs import get_logger
from vehicle.money import MoneyError, parse_decimal

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """What the follower saw: an event's name and data, or a polled session (`poll`)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    session: SessionView | None = None


def _energy(data: dict[str, Any]) -> Decimal | None:
    for key in ("energy_kwh", "energy"):
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            try:
                return parse_decimal(value)
            except MoneyError:
                return None
    return None


class _Follow:
    def __init__(
        self,
        client: StationClient,
        session_id: str,
        stop_at_kwh: Decimal | None,
        on_update: Callable[[SessionUpdate], None],
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.stop_at_kwh = stop_at_kwh
        self.on_update = on_update
        self.stop_requested = False
        self.log = _log.bind(session_id=session_id)

    async def maybe_stop(self, energy_kwh: Decimal | None, status: str | None) -> None:
        if self.stop_requested or self.stop_at_kwh is None or energy_kwh is None:
            return
        if energy_kwh < self.stop_at_kwh or status not in (None, "charging"):
            return
        self.stop_requested = True
        self.log.info("agent.stop_requested", energy_kwh=energy_kwh)
        with contextlib.suppress(Conflict):  # already stopping or over
            await self.client.stop(self.session_id)
        self.on_update(SessionUpdate("stop_requested", {"energy_kwh": str(energy_kwh)}))

    async def stream(self, idle_timeout_s: float) -> None:
        """Follow the event stream until it ends or breaks (the caller then polls)."""
        try:
            async for event in self.client.events(self.session_id, idle_timeout_s=idle_timeout_s):
                data = event.data if isinstance(event.data, dict) else {"data": event.data}
                self.on_update(SessionUpdate(event.event, data))
                if event.event == "meter":
                    await self.maybe_stop(_energy(data), None)
                if event.event == "settled" or data.get("status") in TERMINAL:
                    return
        except (StationError, ProtocolViolation) as exc:  # refused (404, 405…) or broken
            self.log.info("agent.events_fallback", reason=str(exc))

    async def poll(self, interval_s: float) -> SessionView:
        while True:
            view = await self.client.session(self.session_id)
            self.on_update(SessionUpdate("poll", {"status": view.status}, view))
            if view.terminal:
                return view
            await self.maybe_stop(view.energy_kwh, view.status)
            await asyncio.sleep(interval_s)


async def follow_session(
    client: StationClient,
    session_id: str,
    *,
    stop_at_kwh: Decimal | None = None,
    on_update: Callable[[SessionUpdate], None] | None = None,
    use_events: bool = True,
    poll_interval_s: float = 1.0,
    idle_timeout_s: float = 30.0,
    deadline_s: float = 4 * 3600,
) -> SessionView:
    """Follow the session until it is terminal; returns its last view."""
    follow = _Follow(client, session_id, stop_at_kwh, on_update or (lambda _update: None))
    try:
        async with asyncio.timeout(deadline_s):
            if use_events:
                await follow.stream(idle_timeout_s)
            return await follow.poll(poll_interval_s)
    except TimeoutError as exc:
        raise StationUnavailable(f"session {session_id} not over after {deadline_s} s") from exc
