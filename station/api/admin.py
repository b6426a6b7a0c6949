"""The operator API (PROTOCOL §5): ``/v1/admin/…`` behind the admin bearer token.

Agents (register, list, show, suspend, resume), the operator-wide pause,
charge points, the audit log (JSON lines). Every change is audited with the
actor: ``operator``, or ``operator:<name>`` when the caller says who it is in
``X-Chargepay-Operator``. Without a configured admin token the API refuses
everyone.
"""

from __future__ import annotations

import dataclasses
import hmac
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from station.api.rate_limits import FailureWindow, refuse
from station.api.services import services_of
from station.domain.money import Money
from station.errors import Unauthenticated
from station.logs import get_logger
from station.services import agents as agent_registry
from station.services import kill_switch
from station.services.limits import remaining
from station.services.repositories.agents import Agent
from station.store import charging as charging_store

_log = get_logger(__name__)
_bearer = HTTPBearer(auto_error=False, description="CHARGEPAY_ADMIN_TOKEN")
_OPERATOR_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


async def operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_chargepay_operator: Annotated[str | None, Header()] = None,
) -> str:
    """The acting operator (for the audit trail); 401 without the admin token.

    Past ``admin_auth_failures_per_minute`` wrong tokens from one address, that
    address's wrong tokens get 429 ``rate_limited`` until its minute is over;
    the right token is always let in.
    """
    check_bearer(request, credentials, services_of(request).settings.admin_token)
    if x_chargepay_operator and _OPERATOR_NAME.match(x_chargepay_operator):
        return f"operator:{x_chargepay_operator}"
    return "operator"


def check_bearer(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    *expected: SecretStr | None,
) -> None:
    """Return if the bearer token is one of ``expected``; else 401, or 429 past the limit."""
    given = (credentials.credentials if credentials else "").encode()
    matches = [
        hmac.compare_digest(given, token.get_secret_value().encode())
        for token in expected
        if token is not None
    ]
    if any(matches):
        return
    services = services_of(request)
    failures: FailureWindow = request.app.state.bearer_failures
    address = request.client.host if request.client else "unknown"
    wait = failures.retry_after(address)
    if wait is not None:
        refuse(services.metrics, "admin_auth", "too many wrong tokens from this address", wait)
    failures.record(address)
    if failures.retry_after(address) is not None:
        _log.warning("admin.auth_rate_limited", address=address, limit=failures.limit)
    raise Unauthenticated("admin bearer token required")


Operator = Annotated[str, Depends(operator)]
router = APIRouter(prefix="/v1/admin", tags=["operator"])

# PostgreSQL text cannot hold NUL: refuse it at the edge (422), never at the database (500).
NO_NUL = r"^[^\x00]*$"
_Money = Annotated[str, Field(min_length=1, max_length=20, examples=["50.00"], pattern=NO_NUL)]
_Id = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]
AgentId = Annotated[str, Path(max_length=64, pattern=NO_NUL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentIn(_Strict):
    name: str = Field(min_length=1, max_length=200, examples=["fleet-car-7"], pattern=NO_NUL)
    public_key: str = Field(
        min_length=1,
        max_length=64,
        pattern=NO_NUL,
        description="base64 of the raw 32-byte Ed25519 public key",
    )
    currency: str = Field(pattern=r"^[a-z]{3}$", examples=["usd"])
    limit_per_session: _Money
    limit_per_window: _Money
    window_hours: int = Field(default=24, ge=1, le=agent_registry.MAX_WINDOW_HOURS)
    owner: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    allowed_charge_points: list[_Id] | None = Field(default=None, max_length=1000)


class AgentPatch(_Strict):
    """Only the fields sent change; ``allowed_charge_points: null`` allows every one."""

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    public_key: str | None = Field(default=None, min_length=1, max_length=64, pattern=NO_NUL)
    limit_per_session: _Money | None = None
    limit_per_window: _Money | None = None
    window_hours: int | None = Field(default=None, ge=1, le=agent_registry.MAX_WINDOW_HOURS)
    owner: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    allowed_charge_points: list[_Id] | None = Field(default=None, max_length=1000)


class AgentOut(BaseModel):
    agent_id: str
    name: str
    owner: str | None
    public_key: str
    currency: str
    limit_per_session: str
    limit_per_window: str
    window_hours: int
    allowed_charge_points: list[str] | None
    status: str
    suspended_reason: str | None
    created_at: datetime
    remaining: str | None = None


class Reason(_Strict):
    reason: str = Field(min_length=1, max_length=500, pattern=NO_NUL)


class OptionalReason(_Strict):
    reason: str = Field(default="", max_length=500, pattern=NO_NUL)


class SuspendOut(AgentOut):
    sessions_stopping: list[str] = []
    # Charging on a charge point connected to another node: that node stops it.
    sessions_elsewhere: list[str] = []
    sessions_failed: list[str] = []


class PauseOut(BaseModel):
    paused: bool
    reason: str | None
    actor: str | None
    changed_at: datetime | None


class ChargePointIn(_Strict):
    charge_point_id: str = Field(min_length=1, max_length=48, examples=["CP-1"], pattern=NO_NUL)
    password: str = Field(min_length=16, max_length=40, pattern=NO_NUL)


class ChargePointOut(BaseModel):
    charge_point_id: str
    ocpp_version: str | None
    connected: bool
    node_id: str | None
    vendor: str | None
    model: str | None
    firmware_version: str | None
    last_seen: datetime | None
    removed_at: datetime | None = None


ChargePointId = Annotated[str, Path(max_length=48, pattern=NO_NUL)]


def _agent_out(agent: Agent, left: Any = None) -> dict[str, Any]:
    def wire(amount: Any) -> str:
        return Money(amount, agent.currency).to_wire()

    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "owner": agent.owner,
        "public_key": agent.public_key,
        "currency": agent.currency,
        "limit_per_session": wire(agent.limit_per_session),
        "limit_per_window": wire(agent.limit_per_window),
        "window_hours": agent.window_hours,
        "allowed_charge_points": agent.allowed_charge_points,
        "status": agent.status,
        "suspended_reason": agent.suspended_reason,
        "created_at": agent.created_at,
        "remaining": wire(left) if left is not None else None,
    }


@router.post("/agents", status_code=201, response_model=AgentOut)
async def register_agent(body: AgentIn, actor: Operator, request: Request) -> dict[str, Any]:
    """Register an agent that may pay; answers with its id (``agt_…``)."""
    async with services_of(request).units() as uow:
        agent = await agent_registry.register(
            uow, agent_registry.NewAgent(**body.model_dump()), actor=actor
        )
        return _agent_out(agent, agent.limit_per_window.min(agent.limit_per_session))


@router.get("/agents", response_model=list[AgentOut])
async def list_agents(
    _actor: Operator,
    request: Request,
    status: Annotated[str | None, Query(pattern="^(active|suspended|removed)$")] = None,
) -> list[dict[str, Any]]:
    async with services_of(request).units.reader() as uow:
        return [_agent_out(a) for a in await agent_registry.list_all(uow, status=status)]


@router.get("/agents/{agent_id}", response_model=AgentOut)
async def show_agent(agent_id: AgentId, _actor: Operator, request: Request) -> dict[str, Any]:
    """One agent, with what its spending window still allows."""
    async with services_of(request).units.reader() as uow:
        agent = await agent_registry.get(uow, agent_id)
        return _agent_out(agent, await remaining(uow, agent))


@router.patch("/agents/{agent_id}", response_model=AgentOut)
async def update_agent(
    agent_id: AgentId, body: AgentPatch, actor: Operator, request: Request
) -> dict[str, Any]:
    """Change limits, allowed charge points, name, owner or the key (rotation); audited."""
    async with services_of(request).units() as uow:
        agent = await agent_registry.update(
            uow, agent_id, body.model_dump(exclude_unset=True), actor=actor
        )
        return _agent_out(agent, await remaining(uow, agent))


@router.post("/agents/{agent_id}/remove", response_model=AgentOut)
async def remove_agent(
    agent_id: AgentId, body: Reason, actor: Operator, request: Request
) -> dict[str, Any]:
    """Soft removal, audited: every request of the agent is refused from now on; its
    history stays. 409 while one of its sessions is live (stop it first)."""
    async with services_of(request).units() as uow:
        agent = await agent_registry.remove(uow, agent_id, reason=body.reason, actor=actor)
        return _agent_out(agent)


@router.post("/agents/{agent_id}/suspend", response_model=SuspendOut)
async def suspend_agent(
    agent_id: AgentId, body: Reason, actor: Operator, request: Request
) -> dict[str, Any]:
    """Kill switch for one agent: refuse its requests now, stop and settle its sessions."""
    outcome = await kill_switch.suspend_agent(
        services_of(request).kill_switch, agent_id, reason=body.reason, actor=actor
    )
    assert outcome.agent is not None
    return {
        **_agent_out(outcome.agent),
        "sessions_stopping": outcome.sessions_stopping,
        "sessions_elsewhere": outcome.sessions_elsewhere,
        "sessions_failed": outcome.sessions_failed,
    }


@router.post("/agents/{agent_id}/resume", response_model=AgentOut)
async def resume_agent(
    agent_id: AgentId, actor: Operator, request: Request, body: OptionalReason | None = None
) -> dict[str, Any]:
    async with services_of(request).units() as uow:
        agent = await agent_registry.resume(
            uow, agent_id, actor=actor, reason=body.reason if body else ""
        )
        return _agent_out(agent)


@router.get("/pause", response_model=PauseOut)
async def pause_status(_actor: Operator, request: Request) -> dict[str, Any]:
    """Whether new authorisations are paused operator-wide."""
    return await kill_switch.pause_status(services_of(request).kill_switch)


@router.post("/pause", response_model=PauseOut)
async def pause(body: Reason, actor: Operator, request: Request) -> dict[str, Any]:
    """Refuse every new authorisation (403 ``agent_suspended``) until resumed."""
    return await kill_switch.set_pause(
        services_of(request).kill_switch, on=True, reason=body.reason, actor=actor
    )


@router.post("/resume", response_model=PauseOut)
async def unpause(
    actor: Operator, request: Request, body: OptionalReason | None = None
) -> dict[str, Any]:
    """Accept new authorisations again."""
    reason = body.reason if body else ""
    return await kill_switch.set_pause(
        services_of(request).kill_switch, on=False, reason=reason, actor=actor
    )


@router.post("/charge-points", status_code=201, response_model=ChargePointOut)
async def register_charge_point(
    body: ChargePointIn, actor: Operator, request: Request
) -> dict[str, Any]:
    """Register a charge point with its OCPP Basic-auth password (16–40 characters)."""
    db = services_of(request).db
    await charging_store.register_charge_point(db, body.charge_point_id, body.password)
    async with services_of(request).units() as uow:
        await uow.audit.record(
            actor=actor, action="charge_point.registered", subject=body.charge_point_id
        )
    return {
        "charge_point_id": body.charge_point_id,
        "ocpp_version": None,
        "connected": False,
        "node_id": None,
        "vendor": None,
        "model": None,
        "firmware_version": None,
        "last_seen": None,
    }


@router.get("/charge-points", response_model=list[ChargePointOut])
async def list_charge_points(
    _actor: Operator,
    request: Request,
    include_removed: Annotated[bool, Query(alias="all")] = False,
) -> list[dict[str, Any]]:
    """Charge points with their connection status and OCPP version (``?all=true``:
    the removed ones too)."""
    points = await charging_store.list_charge_points(
        services_of(request).db, removed=include_removed
    )
    return [dataclasses.asdict(p) for p in points]


@router.post("/charge-points/{charge_point_id}/remove", response_model=ChargePointOut)
async def remove_charge_point(
    charge_point_id: ChargePointId, body: Reason, actor: Operator, request: Request
) -> dict[str, Any]:
    """Soft removal, audited: the charge point can no longer connect (401, as an unknown
    id); its history stays. 409 while one of its sessions is live (stop it first)."""
    point = await charging_store.remove_charge_point(
        services_of(request).db, charge_point_id, reason=body.reason, actor=actor
    )
    return dataclasses.asdict(point)


@router.get(
    "/audit",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/jsonl": {}}, "description": "one row per line"}},
)
async def export_audit(
    _actor: Operator,
    request: Request,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> StreamingResponse:
    """The audit log as JSON lines, each with its ``seq``, ``prev_hash`` and ``hash``."""
    units = services_of(request).units

    async def lines() -> AsyncIterator[str]:
        async with units.reader() as uow:
            async for line in uow.audit.export_lines(after_seq=after_seq):
                yield line

    return StreamingResponse(lines(), media_type="application/jsonl")


class AuditVerification(BaseModel):
    ok: bool
    rows: int
    head: str
    broken_seq: int | None
    reason: str | None


@router.get("/audit/verify", response_model=AuditVerification)
async def verify_audit(
    _actor: Operator,
    request: Request,
    head: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
) -> dict[str, Any]:
    """Walk the hash chain; ``ok: false`` names the first row that does not fit.

    Pass a ``head`` noted earlier to catch rows cut off the end.
    """
    async with services_of(request).units.reader() as uow:
        result = await uow.audit.verify(expected_head=head)
    return {
        "ok": result.ok,
        "rows": result.rows,
        "head": result.head,
        "broken_seq": result.broken_seq,
        "reason": result.reason,
    }
