"""Agent API: sessions (PROTOCOL §4) — view, events (SSE), stop, receipt; the receipt key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from station.api.app import station_of
from station.api.identity import Agent
from station.api.schemas import ReceiptDoc, ReceiptKeyDoc, SessionDoc
from station.domain.session import SessionStatus

router = APIRouter(tags=["sessions"])
KEEPALIVE_S = 15.0


@router.get("/v1/sessions/{session_id}", responses={200: {"model": SessionDoc}})
async def get_session(session_id: str, agent: Agent, request: Request) -> dict[str, Any]:
    return await station_of(request).payments.sessions.get(agent.agent_id, session_id)


@router.post(
    "/v1/sessions/{session_id}/stop", status_code=202, responses={202: {"model": SessionDoc}}
)
async def stop_session(session_id: str, agent: Agent, request: Request) -> JSONResponse:
    view = await station_of(request).payments.sessions.stop(agent.agent_id, session_id)
    return JSONResponse(view, status_code=202)


@router.get(
    "/v1/sessions/{session_id}/receipt",
    responses={200: {"model": ReceiptDoc, "description": "With a Payment-Receipt header"}},
)
async def receipt(session_id: str, agent: Agent, request: Request) -> JSONResponse:
    body, header = await station_of(request).payments.sessions.receipt(agent.agent_id, session_id)
    return JSONResponse(body, headers={"Payment-Receipt": header})


@router.get("/v1/receipt-key", tags=["receipts"], response_model=ReceiptKeyDoc)
async def receipt_key(request: Request) -> dict[str, str]:
    """The station's Ed25519 receipt key (base64 of the raw 32 bytes)."""
    return {"alg": "ed25519", "public_key": station_of(request).payments.signer.public_key_b64}


def _sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/v1/sessions/{session_id}/events")
async def session_events(session_id: str, agent: Agent, request: Request) -> StreamingResponse:
    """Server-Sent Events: ``meter``, ``status`` and a final ``settled`` (with the receipt)."""
    payments = station_of(request).payments
    await payments.sessions.get(agent.agent_id, session_id)  # 404 before streaming

    async def stream() -> AsyncIterator[str]:
        async with payments.events.subscribe(session_id) as queue:
            current = await payments.sessions.get(agent.agent_id, session_id)
            yield _sse("status", {"status": current["status"]})
            if SessionStatus(current["status"]).final:
                yield _sse("settled", await _final(current))
                return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield _sse(event.name, event.data)
                if event.name == "settled":
                    return

    async def _final(current: dict[str, Any]) -> dict[str, Any]:
        if current["status"] == SessionStatus.SETTLED:
            return await payments.sessions.receipt_event(session_id)
        return {"session_id": session_id, "status": current["status"]}

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
