"""Tariffs and the pricing policy through the operator API (PROTOCOL §5).

    GET    /v1/admin/tariffs                              every stored tariff ("*" = default)
    PUT    /v1/admin/tariffs/default                      the default tariff
    PUT    /v1/admin/tariffs/charge-points/{id}           one charge point's tariff
    DELETE /v1/admin/tariffs/charge-points/{id}           back to the default
    GET    /v1/admin/tariffs/policy?charge_point_id=      the pricing policy in force
    PUT    /v1/admin/tariffs/policy?charge_point_id=      set it (default without the id)

Tariffs take the PROTOCOL §2 shape. Every change is audited. The store
functions are the payments side's (`station.store.payments`).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from station.api.admin import NO_NUL, Operator
from station.api.services import services_of
from station.domain.money import MoneyError, check_currency
from station.domain.negotiation import PricingPolicy
from station.domain.tariff import Tariff
from station.errors import NotFound, ValidationError
from station.store import payments as store

router = APIRouter(prefix="/v1/admin/tariffs", tags=["operator"])
# Far above any real price, far below what the money columns hold.
MAX_FIGURE = Decimal(1_000_000)
_Price = Annotated[str, Field(min_length=1, max_length=16, pattern=NO_NUL, examples=["0.4500"])]
ChargePointId = Annotated[str, Path(min_length=1, max_length=48, pattern=NO_NUL)]


class TariffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field(pattern=r"^[a-z]{3}$", examples=["usd"])
    energy_price_per_kwh: _Price
    session_fee: _Price = "0"
    time_price_per_hour: _Price = "0"
    idle_fee_per_minute: _Price = "0"
    idle_grace_minutes: int = Field(default=0, ge=0, le=1440)
    max_power_kw: _Price | None = None
    min_cost: _Price | None = None
    max_cost: _Price | None = None
    tariff_id: str = Field(default="default", min_length=1, max_length=64, pattern=NO_NUL)


def _tariff(body: TariffIn) -> Tariff:
    try:
        tariff = Tariff.from_wire(body.model_dump(exclude_none=True))
    except (MoneyError, KeyError, ValueError, ArithmeticError) as exc:
        raise ValidationError(f"tariff: {exc}") from exc
    _check_bounded(tariff, "tariff")
    return tariff


def _check_bounded(value: Tariff | PricingPolicy, what: str) -> None:
    for item in dataclasses.fields(value):
        figure = getattr(value, item.name)
        if isinstance(figure, Decimal) and not (figure.is_finite() and abs(figure) < MAX_FIGURE):
            raise ValidationError(f"{what}: {item.name} must be a finite figure below {MAX_FIGURE}")


def _check_policy(policy: PricingPolicy) -> None:
    try:
        check_currency(policy.currency)
    except MoneyError as exc:
        raise ValidationError(f"policy: {exc}") from exc
    if not 0 <= policy.idle_grace_minutes <= 1440 or not 1 <= policy.max_rounds <= 50:
        raise ValidationError("policy: idle_grace_minutes 0–1440, max_rounds 1–50")
    if not 0 < len(policy.tariff_id) <= 64 or "\x00" in policy.tariff_id:
        raise ValidationError("policy: tariff_id of 1–64 characters")


async def _store(request: Request, actor: str, tariff: Tariff, cp: str | None) -> dict[str, Any]:
    async with services_of(request).units() as uow:
        await uow.pricing.set_tariff(tariff, cp)
        await uow.audit.record(
            actor=actor,
            action="tariff.set",
            subject=cp or store.DEFAULT_KEY,
            data=tariff.to_wire(),
        )
    return {"charge_point_id": cp or store.DEFAULT_KEY, "tariff": _wire(tariff)}


def _wire(tariff: Tariff) -> dict[str, Any]:
    return {**tariff.to_wire(), "tariff_id": tariff.tariff_id}


@router.get("")
async def list_tariffs(_actor: Operator, request: Request) -> list[dict[str, Any]]:
    """Every stored tariff: the default under ``*``, then per charge point."""
    async with services_of(request).units.reader() as uow:
        tariffs = await uow.pricing.tariffs()
    return [
        {"charge_point_id": cp, "tariff": _wire(tariff)} for cp, tariff in sorted(tariffs.items())
    ]


@router.put("/default")
async def set_default_tariff(body: TariffIn, actor: Operator, request: Request) -> dict[str, Any]:
    """The tariff of every charge point without one of its own."""
    return await _store(request, actor, _tariff(body), None)


@router.put("/charge-points/{charge_point_id}")
async def set_charge_point_tariff(
    charge_point_id: ChargePointId, body: TariffIn, actor: Operator, request: Request
) -> dict[str, Any]:
    return await _store(request, actor, _tariff(body), charge_point_id)


@router.delete("/charge-points/{charge_point_id}", status_code=204)
async def delete_charge_point_tariff(
    charge_point_id: ChargePointId, actor: Operator, request: Request
) -> Response:
    """Drop the charge point's own tariff (the default applies again)."""
    async with services_of(request).units() as uow:
        if not await uow.pricing.delete_tariff(charge_point_id):
            raise NotFound(f"no tariff of its own for {charge_point_id}")
        await uow.audit.record(actor=actor, action="tariff.deleted", subject=charge_point_id)
    return Response(status_code=204)


POLICY_EXAMPLE = {"currency": "usd", "list_price_per_kwh": "0.45", "floor_price_per_kwh": "0.30"}
_PolicyFor = Annotated[str | None, Query(min_length=1, max_length=48, pattern=NO_NUL)]


@router.get("/policy")
async def get_policy(
    _actor: Operator, request: Request, charge_point_id: _PolicyFor = None
) -> dict[str, Any]:
    """The pricing policy in force (the charge point's, else the default)."""
    async with services_of(request).units.reader() as uow:
        policy = await uow.pricing.policy(charge_point_id)
    if policy is None:
        raise NotFound("no stored pricing policy (the settings' defaults apply)")
    return store.policy_to_json(policy)


@router.put("/policy")
async def set_policy(
    body: Annotated[dict[str, Any], Body(examples=[POLICY_EXAMPLE])],
    actor: Operator,
    request: Request,
    charge_point_id: _PolicyFor = None,
) -> dict[str, Any]:
    """Store the pricing policy (floor, list price, concession, discounts, …)."""
    try:
        policy = store.policy_from_json(body)
    except (KeyError, TypeError, ValueError, ArithmeticError, InvalidOperation) as exc:
        raise ValidationError(f"policy: {type(exc).__name__}: {exc}") from exc
    _check_bounded(policy, "policy")
    _check_policy(policy)
    doc = store.policy_to_json(policy)
    async with services_of(request).units() as uow:
        await uow.pricing.set_policy(policy, charge_point_id)
        await uow.audit.record(
            actor=actor,
            action="pricing_policy.set",
            subject=charge_point_id or store.DEFAULT_KEY,
            data=doc,
        )
    return doc
