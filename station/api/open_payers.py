"""Operator API for unregistered payers (``settings.open_payers``): the kill switch of
one payment method. The method is named as the station keys it —
``payment_method:pm_…`` for a PaymentMethod, ``card:<fingerprint>`` for a Shared
Payment Token's card — as the ``payment.hold_requested`` audit row shows it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from station.api.admin import Operator
from station.api.services import services_of
from station.services import open_payers

router = APIRouter(tags=["operator"])


class PaymentMethodSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_method: str = Field(min_length=3, max_length=255, pattern=r"^[a-z_]+:[A-Za-z0-9_]+$")
    reason: str = Field(min_length=1, max_length=500, pattern=r"^[^\x00]*$")


@router.post("/v1/admin/payment-methods/block")
async def block(body: PaymentMethodSwitch, actor: Operator, request: Request) -> dict[str, Any]:
    """Refuse every new payment an unregistered payer makes with this payment method."""
    await open_payers.set_blocked(
        services_of(request).units,
        body.payment_method,
        on=True,
        actor=actor,
        reason=body.reason,
    )
    return {"payment_method": body.payment_method, "blocked": True}


@router.post("/v1/admin/payment-methods/unblock")
async def unblock(body: PaymentMethodSwitch, actor: Operator, request: Request) -> dict[str, Any]:
    await open_payers.set_blocked(
        services_of(request).units,
        body.payment_method,
        on=False,
        actor=actor,
        reason=body.reason,
    )
    return {"payment_method": body.payment_method, "blocked": False}
