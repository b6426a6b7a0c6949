"""Agent API: negotiate (PROTOCOL §2) and accept with an MPP credential (§3)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from station.api.identity import Agent
from station.api.rate_limits import FailureWindow, refuse
from station.api.schemas import NegotiationDoc, SessionDoc
from station.api.services import services_of
from station.domain.money import MoneyError, parse_decimal
from station.errors import NotFound, ValidationError
from station.services.negotiations import CounterRequest, OpenRequest

router = APIRouter(tags=["negotiation"])


def _aware(value: datetime | None) -> datetime | None:
    """An RFC 3339 time with a zone, as UTC (a time past year 9999 in UTC is refused)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("times are RFC 3339 with a zone (e.g. Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time outside the years 1–9999 in UTC") from exc


Decimal4 = Annotated[str, Field(max_length=32, examples=["40"])]
AwareTime = Annotated[datetime | None, AfterValidator(_aware)]


class NegotiationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    charge_point_id: str = Field(min_length=1, max_length=48)
    evse_id: int = Field(default=1, ge=1, le=1000)
    energy_kwh: Decimal4
    max_power_kw: Decimal4 | None = None
    departure_at: AwareTime = None
    currency: str | None = Field(default=None, pattern=r"^[a-z]{3}$")


class CounterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    energy_price_per_kwh: Decimal4 | None = None
    max_power_kw: Decimal4 | None = None
    departure_at: AwareTime = None


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offer_id: str = Field(min_length=1, max_length=40)
    cap: str = Field(min_length=1, max_length=32, examples=["25.00"])


def _decimal(name: str, text: str | None, places: int = 4) -> Any:
    if text is None:
        return None
    try:
        value = parse_decimal(text, places=places)
    except MoneyError as exc:
        raise ValidationError(f"{name}: {exc}") from exc
    if value <= 0 or value > 100_000:
        raise ValidationError(f"{name} must be positive and at most 100000")
    return value


@router.post("/v1/negotiations", status_code=201, responses={201: {"model": NegotiationDoc}})
async def open_negotiation(body: NegotiationIn, agent: Agent, request: Request) -> JSONResponse:
    """Open a negotiation: the station's first offer for the energy asked.

    A charge point that does not exist and one the agent may not use are the
    same 404. Past ``unknown_charge_points_per_minute`` of them, the agent's
    opens are all 429 until its minute ends (known ids too: no oracle left).
    """
    services = services_of(request)
    probes: FailureWindow = request.app.state.unknown_charge_points
    wait = probes.retry_after(agent.ceilings_key)
    if wait is not None:
        refuse(services.metrics, "unknown_charge_points", "too many unknown charge points", wait)
    if agent.unregistered:  # one agent for all of them: each site opens its share a minute
        opens: FailureWindow = request.app.state.open_payer_opens
        wait = opens.retry_after(agent.ceilings_key)
        if wait is not None:
            refuse(services.metrics, "open_negotiations", "too many negotiations a minute", wait)
        opens.record(agent.ceilings_key)
    try:
        agent.check_charge_point(body.charge_point_id)
        view = await services.negotiations.open(
            agent.agent_id,
            OpenRequest(
                charge_point_id=body.charge_point_id,
                evse_id=body.evse_id,
                energy_kwh=_decimal("energy_kwh", body.energy_kwh, 3),
                max_power_kw=_decimal("max_power_kw", body.max_power_kw, 3),
                departure_at=body.departure_at,
                currency=body.currency,
            ),
        )
    except NotFound:
        probes.record(agent.ceilings_key)
        raise
    return JSONResponse(view, status_code=201)


@router.post(
    "/v1/negotiations/{negotiation_id}/counter", responses={200: {"model": NegotiationDoc}}
)
async def counter(
    negotiation_id: str, body: CounterIn, agent: Agent, request: Request
) -> dict[str, Any]:
    """Counter the current offer: agreed, a new offer (open), or rejected."""
    services = services_of(request)
    return await services.negotiations.counter(
        agent.agent_id,
        negotiation_id,
        CounterRequest(
            energy_price_per_kwh=_decimal("energy_price_per_kwh", body.energy_price_per_kwh),
            max_power_kw=_decimal("max_power_kw", body.max_power_kw, 3),
            departure_at=body.departure_at,
        ),
    )


@router.post(
    "/v1/negotiations/{negotiation_id}/accept",
    status_code=201,
    responses={
        201: {"model": SessionDoc},
        402: {"description": "Payment required: an MPP challenge (WWW-Authenticate)"},
    },
)
async def accept(
    negotiation_id: str,
    body: AcceptIn,
    agent: Agent,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Accept an offer with a cap: 402 + a challenge per offered intent (``authorize``,
    ``charge``), then 201 + the session with a credential (on ``charge``, with its
    ``Payment-Receipt``)."""
    services = services_of(request)
    view, headers = await services.authorisation.accept(
        agent.agent_id, negotiation_id, body.offer_id, body.cap, authorization
    )
    return JSONResponse(view, status_code=201, headers=headers or None)
