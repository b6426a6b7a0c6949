"""Negotiation: open one, answer counter-offers (PROTOCOL §2).

Decisions come from `station.domain.negotiation`; this shell loads the
policy in force, persists negotiations and signed offers, and audits them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from station.domain.negotiation import (
    NegotiationStatus,
    Offer,
    Terms,
    opening,
    respond,
)
from station.errors import NegotiationClosed, NotFound, RateLimited, ValidationError
from station.logs import get_logger
from station.metrics import metrics_for
from station.services.offers import negotiation_view, new_id, offer_signature
from station.services.open_payers import OPEN_AGENT_ID
from station.services.pricing import effective_policy
from station.services.repositories.negotiations import Negotiation
from station.services.repositories.negotiations import Offer as OfferRecord
from station.services.unit_of_work import UnitOfWork, UnitOfWorkFactory
from station.settings import Settings

_log = get_logger(__name__)
MAX_NEGOTIATION_S = 3600
# Negotiations that still hold an offer the agent may accept.
LIVE = (NegotiationStatus.OPEN.value, NegotiationStatus.AGREED.value)


@dataclass(frozen=True, slots=True)
class OpenRequest:
    charge_point_id: str
    energy_kwh: Decimal
    evse_id: int = 1
    max_power_kw: Decimal | None = None
    departure_at: datetime | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class CounterRequest:
    energy_price_per_kwh: Decimal | None = None
    max_power_kw: Decimal | None = None
    departure_at: datetime | None = None


class NegotiationService:
    def __init__(
        self,
        units: UnitOfWorkFactory,
        settings: Settings,
        secret: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._units = units
        self._settings = settings
        self._secret = secret
        self._now = clock

    def _offer_row(self, negotiation_id: str, offer: Offer, now: datetime) -> OfferRecord:
        row = OfferRecord(
            offer_id=new_id("off"),
            negotiation_id=negotiation_id,
            round=offer.round,
            tariff=offer.tariff.to_wire(),
            estimated_cost=offer.estimated_cost.amount,
            recommended_cap=offer.recommended_cap.amount,
            valid_until=now.replace(microsecond=0) + timedelta(seconds=self._settings.offer_ttl_s),
            signature="",
            created_at=now,
        )
        return replace(row, signature=offer_signature(self._secret, row))

    async def open(self, agent_id: str, request: OpenRequest) -> dict[str, Any]:
        now = self._now()
        if request.energy_kwh <= 0:
            raise ValidationError("energy_kwh must be positive")
        async with self._units() as uow:
            await self._check_ceiling(uow, agent_id, now)
            point = await uow.charge_points.get(request.charge_point_id)
            if point is None or point.removed_at is not None:  # removed: as if unknown
                raise NotFound(f"no charge point {request.charge_point_id}")
            policy = await effective_policy(uow, self._settings, request.charge_point_id)
            if request.currency is not None and request.currency != policy.currency:
                raise ValidationError(f"this station prices in {policy.currency}")
            terms = Terms(request.energy_kwh, request.max_power_kw, request.departure_at)
            offer = opening(policy, terms, now)
            negotiation_id = new_id("neg")
            row = self._offer_row(negotiation_id, offer, now)
            neg = Negotiation(
                negotiation_id=negotiation_id,
                agent_id=agent_id,
                charge_point_id=request.charge_point_id,
                evse_id=request.evse_id,
                currency=policy.currency,
                energy_kwh=request.energy_kwh,
                max_power_kw=request.max_power_kw,
                departure_at=request.departure_at,
                status=NegotiationStatus.OPEN.value,
                round=1,
                max_rounds=policy.max_rounds,
                expires_at=now
                + timedelta(
                    seconds=min(self._settings.offer_ttl_s * policy.max_rounds, MAX_NEGOTIATION_S)
                ),
                created_at=now,
                current_offer_id=row.offer_id,
            )
            await uow.negotiations.add(neg)
            await uow.offers.add(row)
            await uow.audit.record(
                actor=f"agent:{agent_id}",
                action="negotiation.opened",
                subject=neg.negotiation_id,
                data={
                    "charge_point_id": neg.charge_point_id,
                    "offer_id": row.offer_id,
                    "energy_price_per_kwh": row.tariff["energy_price_per_kwh"],
                },
            )
            view = negotiation_view(neg, row)
        _log.info("negotiation.opened", negotiation_id=neg.negotiation_id, agent_id=agent_id)
        return view

    async def _check_ceiling(self, uow: UnitOfWork, agent_id: str, now: datetime) -> None:
        """429 if the agent has ``max_open_negotiations_per_agent`` live ones (open or
        agreed, not expired); ``Retry-After`` is when the first of them expires.

        The agent's row is locked first, so parallel opens of one agent count in turn.
        """
        await uow.agents.get(agent_id, lock=True)
        live_now = await uow.negotiations.live(agent_id, statuses=LIVE, now=now)
        live, first_expiry = live_now.count, live_now.first_expiry
        ceiling = (
            self._settings.open_payer_max_live_negotiations
            if agent_id == OPEN_AGENT_ID  # every unregistered payer: the station's bound
            else self._settings.max_open_negotiations_per_agent
        )
        if live < ceiling:
            return
        metrics = metrics_for(uow)
        if metrics is not None:
            metrics.http_rate_limited.labels(limit="open_negotiations").inc()
        wait = (first_expiry - now).total_seconds() if first_expiry is not None else 1
        raise RateLimited(
            f"{live} negotiations open (at most {ceiling}); accept, or wait until one expires",
            retry_after_s=max(1, math.ceil(wait)),
        )

    async def counter(
        self, agent_id: str, negotiation_id: str, request: CounterRequest
    ) -> dict[str, Any]:
        now = self._now()
        async with self._units() as uow:
            neg = await uow.negotiations.get(negotiation_id, lock=True)
            if neg is None or neg.agent_id != agent_id:
                raise NotFound(f"no negotiation {negotiation_id}")
            if neg.status != NegotiationStatus.OPEN or now >= neg.expires_at:
                raise NegotiationClosed(f"negotiation is {neg.status}")
            if neg.round > neg.max_rounds:
                raise NegotiationClosed("no rounds left")
            policy = await effective_policy(uow, self._settings, neg.charge_point_id)
            if request.max_power_kw is not None:
                if request.max_power_kw <= 0:
                    raise ValidationError("max_power_kw must be positive")
                neg = replace(neg, max_power_kw=request.max_power_kw)
            if request.departure_at is not None:
                neg = replace(neg, departure_at=request.departure_at)
            terms = Terms(neg.energy_kwh, neg.max_power_kw, neg.departure_at)
            decision = respond(policy, terms, now, neg.round, request.energy_price_per_kwh)
            neg = replace(neg, status=decision.status.value, detail=decision.detail)
            row: OfferRecord | None = None
            if decision.offer is not None:
                row = self._offer_row(neg.negotiation_id, decision.offer, now)
                await uow.offers.add(row)
                neg = replace(neg, round=decision.offer.round, current_offer_id=row.offer_id)
            await uow.negotiations.save(neg)
            await uow.audit.record(
                actor=f"agent:{agent_id}",
                action=f"negotiation.{decision.status.value}",
                subject=neg.negotiation_id,
                data={
                    "round": neg.round,
                    "counter_price_per_kwh": str(request.energy_price_per_kwh)
                    if request.energy_price_per_kwh is not None
                    else None,
                    "offer_id": row.offer_id if row is not None else None,
                },
            )
            view = negotiation_view(neg, row)
        _log.info(
            "negotiation.countered",
            negotiation_id=negotiation_id,
            status=decision.status.value,
            round=neg.round,
        )
        return view
