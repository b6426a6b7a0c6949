"""Agent API: sessions (PROTOCOL §4) — view, events (SSE), stop, receipt; the receipt key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from station.api import http_server
from station.api.identity import Agent
from station.api.rate_limits import Slots, refuse
from station.api.schemas import ReceiptDoc, ReceiptKeyDoc, SessionDoc
from station.api.services import services_of
from station.domain.session import SessionStatus
from station.logs import get_logger
from station.payments.receipts import RECEIPT_CACHE_CONTROL
from station.services.session_events import SessionEvent

_log = get_logger(__name__)
router = APIRouter(tags=["sessions"])
KEEPALIVE_S = 15.0


@router.get("/v1/sessions/{session_id}", responses={200: {"model": SessionDoc}})
async def get_session(session_id: str, agent: Agent, request: Request) -> dict[str, Any]:
    return await services_of(request).sessions.get(agent.agent_id, session_id)


@router.post(
    "/v1/sessions/{session_id}/stop", status_code=202, responses={202: {"model": SessionDoc}}
)
async def stop_session(session_id: str, agent: Agent, request: Request) -> JSONResponse:
    view = await services_of(request).sessions.stop(agent.agent_id, session_id)
    return JSONResponse(view, status_code=202)


@router.get(
    "/v1/sessions/{session_id}/receipt",
    responses={200: {"model": ReceiptDoc, "description": "With a Payment-Receipt header"}},
)
async def receipt(session_id: str, agent: Agent, request: Request) -> JSONResponse:
    body, header = await services_of(request).sessions.receipt(agent.agent_id, session_id)
    return JSONResponse(
        body, headers={"Payment-Receipt": header, "Cache-Control": RECEIPT_CACHE_CONTROL}
    )


@router.get("/v1/receipt-key", tags=["receipts"], response_model=ReceiptKeyDoc)
async def receipt_key(request: Request) -> dict[str, str]:
    """The station's Ed25519 receipt key (base64 of the raw 32 bytes)."""
    return {"alg": "ed25519", "public_key": services_of(request).signer.public_key_b64}


def _sse(name: str, data: dict[str, Any], seq: int | None = None) -> str:
    head = "" if seq is None else f"id: {seq}\n"
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _last_event_id(request: Request) -> int | None:
    value = request.headers.get("last-event-id", "").strip()
    return int(value) if value.isdigit() and len(value) < 10 else None


@router.get("/v1/sessions/{session_id}/events")
async def session_events(session_id: str, agent: Agent, request: Request) -> StreamingResponse:
    """Server-Sent Events: ``meter``, ``status`` and a final ``settled`` (with the receipt).

    At most ``max_event_streams_per_agent`` open at once per agent (429
    ``rate_limited`` past it); a stream whose client takes no data for
    ``event_stream_send_timeout_s`` is cut.
    """
    services = services_of(request)
    await services.sessions.get(agent.agent_id, session_id)  # 404 before streaming
    slots: Slots[str] = request.app.state.event_streams
    if not slots.acquire(agent.ceilings_key):
        refuse(
            services.metrics,
            "event_streams",
            f"{slots.per_key} event streams already open for this agent",
            KEEPALIVE_S,
        )
    services.metrics.event_streams.inc()

    def release() -> None:
        slots.release(agent.ceilings_key)
        services.metrics.event_streams.dec()

    events = services.events
    resume = _last_event_id(request)

    async def stream() -> AsyncIterator[str]:
        # Stored events (several nodes) carry a per-session number: the stream sends each
        # once, in order, filling gaps from the store; `Last-Event-ID` resumes after one.
        stop: asyncio.Future[Any] = asyncio.ensure_future(services.stopping.wait())
        get: asyncio.Future[Any] | None = None
        try:
            async with events.subscribe(session_id) as queue:
                current = await services.sessions.get(agent.agent_id, session_id)
                last = resume if resume is not None else await events.last_seq(session_id)
                if resume is not None and last is not None:
                    for missed in await events.replay(session_id, last):
                        last = missed.seq
                        yield _sse(missed.name, missed.data, missed.seq)
                        if missed.name == "settled":
                            return
                else:
                    yield _sse("status", {"status": current["status"]})
                if SessionStatus(current["status"]).final:
                    yield _sse("settled", await _final(current))
                    return
                while True:
                    if get is None or get.done():
                        get = asyncio.ensure_future(queue.get())
                    await asyncio.wait(
                        {get, stop}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
                    )
                    batch: list[SessionEvent]
                    if get.done():
                        batch = [get.result()]
                    elif stop.done():
                        # The station is going away: end now, not at uvicorn's deadline. The
                        # agent follows on by polling (or another node) once it is back.
                        yield ": station stopping\n\n"
                        return
                    else:
                        # Stored events: a lost wake-up shows as a gap, filled here.
                        batch = [] if last is None else await events.replay(session_id, last)
                        if not batch:
                            yield ": keep-alive\n\n"
                            continue
                    for event in batch:
                        if last is not None and event.seq is not None:
                            if event.seq <= last:
                                continue
                            gap = await events.replay(session_id, last, upto=event.seq - 1)
                            for missed in gap:
                                last = missed.seq
                                yield _sse(missed.name, missed.data, missed.seq)
                                if missed.name == "settled":
                                    return
                            last = event.seq
                        yield _sse(event.name, event.data, event.seq)
                        if event.name == "settled":
                            return
        finally:
            for waiter in (stop, get):
                if waiter is not None and not waiter.done():
                    waiter.cancel()

    async def _final(current: dict[str, Any]) -> dict[str, Any]:
        if current["status"] == SessionStatus.SETTLED:
            return await services.receipts.event(session_id)
        return {"session_id": session_id, "status": current["status"]}

    return EventStream(
        stream(),
        release=release,
        send_timeout_s=services.settings.event_stream_send_timeout_s,
        media_type="text/event-stream",
        # The `settled` event carries the Payment-Receipt: private, as MPP asks, and never stored.
        headers={"Cache-Control": f"{RECEIPT_CACHE_CONTROL}, no-store"},
    )


class EventStream(StreamingResponse):
    """A stream that gives its slot back when it ends, and is cut when its client stalls.

    A send that waits longer than ``send_timeout_s`` (the client's buffers
    are full: it reads nothing) aborts the connection; uvicorn then reports
    the disconnect and the stream ends.
    """

    def __init__(
        self,
        content: AsyncIterator[str],
        *,
        release: Callable[[], None],
        send_timeout_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self._release = release
        self._send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stalled = False

        async def bounded_send(message: Message) -> None:
            nonlocal stalled
            if stalled:
                return
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    await send(message)
            except TimeoutError:
                stalled = True
                _log.warning(
                    "sessions.event_stream_stalled",
                    path=scope.get("path"),
                    send_timeout_s=self._send_timeout_s,
                )
                http_server.abort(scope)

        try:
            await super().__call__(scope, receive, bounded_send)
        finally:
            self._release()
