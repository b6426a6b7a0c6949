"""The operator-wide event stream (SSE): every session event this node publishes.

``GET /v1/admin/events`` (admin bearer token) and ``GET /dashboard/events``
(the dashboard's cookie) stream the same Server-Sent Events the agent's
per-session stream carries — ``meter``, ``status``, ``settled`` — for every
session, each ``data`` with its ``session_id``. Live only: nothing is
replayed; read the state first (``/v1/admin/sessions``), then follow. A
reader too slow for the station loses the oldest events, never the station's
time. When the station stops, the stream sends ``stopping`` and ends (a
shutdown never waits on an open dashboard). Not in the OpenAPI document:
the stream has no end to fuzz against.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from station.api.admin import Operator
from station.api.dashboard_auth import DashboardOperator
from station.api.services import services_of
from station.services.session_events import SessionEvent

KEEPALIVE_S = 15.0
router = APIRouter()


def _sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def operator_stream(request: Request, keepalive_s: float = KEEPALIVE_S) -> StreamingResponse:
    services = services_of(request)
    events, stopping = services.events, services.stopping

    async def stream() -> AsyncIterator[str]:
        stop = asyncio.ensure_future(stopping.wait())
        get: asyncio.Future[tuple[str, SessionEvent]] | None = None
        try:
            async with events.subscribe_all() as queue:
                yield ": connected\n\n"
                while True:
                    get = asyncio.ensure_future(queue.get())
                    await asyncio.wait(
                        {get, stop}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
                    )
                    if get.done():
                        session_id, event = get.result()
                        yield _sse(event.name, {**event.data, "session_id": session_id})
                    elif stop.done():
                        # The station is going away: end the stream now, not at uvicorn's deadline.
                        yield _sse("stopping", {})
                        return
                    else:
                        yield ": keep-alive\n\n"
        finally:
            for waiter in (stop, get):
                if waiter is not None and not waiter.done():
                    waiter.cancel()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/v1/admin/events", include_in_schema=False)
async def admin_events(_actor: Operator, request: Request) -> StreamingResponse:
    """Every session event of this node, for operator tools (bearer token)."""
    return operator_stream(request)


@router.get("/dashboard/events", include_in_schema=False)
async def dashboard_events(_actor: DashboardOperator, request: Request) -> StreamingResponse:
    """The same stream for the dashboard page (its cookie; EventSource sends no headers)."""
    return operator_stream(request)
