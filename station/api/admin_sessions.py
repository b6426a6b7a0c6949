"""The operator's view of sessions (PROTOCOL §5): filter them, open one.

``GET /v1/admin/sessions?agent_id=&charge_point_id=&status=&since=&until=``
lists sessions (newest first; ``since``/``until`` bound their creation time).
``GET /v1/admin/sessions/{id}`` is the session of §4 plus its agent, its meter
samples and the anomalies metering found; ``…/receipt`` its signed receipt
once settled; ``POST …/stop`` stops it as the operator (audited).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from station.api.admin import NO_NUL, Operator
from station.api.services import services_of
from station.domain.session import Session
from station.errors import NotFound, ValidationError
from station.services.repositories.reports import SessionFilter
from station.services.sessions import OPERATOR_STOP, session_view

router = APIRouter(prefix="/v1/admin", tags=["operator"])
MAX_SAMPLES = 2000
_Filter = Annotated[str | None, Query(max_length=64, pattern=NO_NUL)]


def _utc(moment: datetime | None, name: str) -> datetime | None:
    """Aware UTC; a time without a zone is taken as UTC."""
    if moment is None:
        return None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValidationError(f"{name}: not a representable UTC time") from exc


def _listed(session: Session) -> dict[str, Any]:
    return {**session_view(session), "agent_id": session.agent_id, "created_at": session.created_at}


@router.get("/sessions")
async def list_sessions(
    _actor: Operator,
    request: Request,
    agent_id: _Filter = None,
    charge_point_id: _Filter = None,
    status: _Filter = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Sessions matching every filter given, newest first."""
    where = SessionFilter(
        agent_id, charge_point_id, status, _utc(since, "since"), _utc(until, "until")
    )
    async with services_of(request).units.reader() as uow:
        return [_listed(s) for s in await uow.reports.sessions(where, limit=limit)]


_SessionId = Annotated[str, Path(max_length=64, pattern=NO_NUL)]


@router.post("/sessions/{session_id}/stop", status_code=202)
async def stop_session(session_id: _SessionId, actor: Operator, request: Request) -> JSONResponse:
    """Stop a session as the operator (its charge point stops; it settles for what was
    delivered); audited. A session already stopping or ended is answered as it is."""
    services = services_of(request)
    view = await services.sessions.stop(None, session_id, reason=OPERATOR_STOP)
    async with services.units() as uow:
        await uow.audit.record(actor=actor, action="session.stopped", subject=session_id)
    return JSONResponse(jsonable_encoder(view), status_code=202)


@router.get("/sessions/{session_id}/receipt")
async def session_receipt(
    session_id: _SessionId, _actor: Operator, request: Request
) -> JSONResponse:
    """The settled session's signed receipt (§4) and its Payment-Receipt header; 409 before."""
    body, header = await services_of(request).sessions.receipt(None, session_id)
    return JSONResponse(body, headers={"Payment-Receipt": header})


@router.get("/sessions/{session_id}")
async def show_session(
    session_id: Annotated[str, Path(max_length=64, pattern=NO_NUL)],
    _actor: Operator,
    request: Request,
) -> dict[str, Any]:
    """One session with its agent, meter samples and anomalies."""
    async with services_of(request).units.reader() as uow:
        found = await uow.sessions.get(session_id)
        if found is None:
            raise NotFound(f"no session {session_id}")
        transaction_id = found.metering.transaction_id
        samples: list[dict[str, Any]] = []
        anomalies: list[dict[str, Any]] = []
        if transaction_id is not None:
            samples = [
                {
                    "timestamp": m.timestamp,
                    "measurand": m.measurand,
                    "phase": m.phase,
                    "context": m.context,
                    "unit": m.unit,
                    "value": None if m.value is None else str(m.value),
                }
                for m in await uow.reports.meter_samples(transaction_id, limit=MAX_SAMPLES)
            ]
            anomalies = [
                {"kind": a.kind, "detail": a.detail, "timestamp": a.timestamp}
                for a in await uow.reports.anomalies(transaction_id)
            ]
        return {**_listed(found), "meter_samples": samples, "anomalies": anomalies}
