"""Negotiation: open one, answer counter-offers (PROTOCOL §2).

Decisions come from `station.domain.negotiation`; this shell loads the
policy in force, persists negotiations and signed offers, and audits them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

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
from station.settings import Settings
from station.store import audit
from station.store.charging import ChargePointRow
from station.store.db import Database
from station.store.payments import NegotiationRow, OfferRow
from station.store.trust import AgentRow

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
        self, db: Database, settings: Settings, secret: str, clock: Callable[[], datetime]
    ) -> None:
        self._db = db
        self._settings = settings
        self._secret = secret
        self._now = clock

    def _offer_row(self, negotiation_id: str, offer: Offer, now: datetime) -> OfferRow:
        row = OfferRow(
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
        row.signature = offer_signature(self._secret, row)
        return row

    async def open(self, agent_id: str, request: OpenRequest) -> dict[str, Any]:
        now = self._now()
        if request.energy_kwh <= 0:
            raise ValidationError("energy_kwh must be positive")
        async with self._db.session() as session:
            await self._check_ceiling(session, agent_id, now)
            point = await session.get(ChargePointRow, request.charge_point_id)
            if point is None or point.removed_at is not None:  # removed: as if unknown
                raise NotFound(f"no charge point {request.charge_point_id}")
            policy = await effective_policy(session, self._settings, request.charge_point_id)
            if request.currency is not None and request.currency != policy.currency:
                raise ValidationError(f"this station prices in {policy.currency}")
            terms = Terms(request.energy_kwh, request.max_power_kw, request.departure_at)
            offer = opening(policy, terms, now)
            neg = NegotiationRow(
                negotiation_id=new_id("neg"),
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
            )
            session.add(neg)
            await session.flush()
            row = self._offer_row(neg.negotiation_id, offer, now)
            session.add(row)
            neg.current_offer_id = row.offer_id
            await audit.record(
                session,
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

    async def _check_ceiling(self, session: AsyncSession, agent_id: str, now: datetime) -> None:
        """429 if the agent has ``max_open_negotiations_per_agent`` live ones (open or
        agreed, not expired); ``Retry-After`` is when the first of them expires.

        The agent's row is locked first, so parallel opens of one agent count in turn.
        """
        await session.execute(
            select(AgentRow.agent_id).where(AgentRow.agent_id == agent_id).with_for_update()
        )
        live, first_expiry = (
            await session.execute(
                select(func.count(), func.min(NegotiationRow.expires_at)).where(
                    NegotiationRow.agent_id == agent_id,
                    NegotiationRow.status.in_(LIVE),
                    NegotiationRow.expires_at > now,
                )
            )
        ).one()
        ceiling = (
            self._settings.open_payer_max_live_negotiations
            if agent_id == OPEN_AGENT_ID  # every unregistered payer: the station's bound
            else self._settings.max_open_negotiations_per_agent
        )
        if live < ceiling:
            return
        metrics = metrics_for(session)
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
        async with self._db.session() as session:
            neg = await session.get(NegotiationRow, negotiation_id, with_for_update=True)
            if neg is None or neg.agent_id != agent_id:
                raise NotFound(f"no negotiation {negotiation_id}")
            if neg.status != NegotiationStatus.OPEN or now >= neg.expires_at:
                raise NegotiationClosed(f"negotiation is {neg.status}")
            if neg.round > neg.max_rounds:
                raise NegotiationClosed("no rounds left")
            policy = await effective_policy(session, self._settings, neg.charge_point_id)
            if request.max_power_kw is not None:
                if request.max_power_kw <= 0:
                    raise ValidationError("max_power_kw must be positive")
                neg.max_power_kw = request.max_power_kw
            if request.departure_at is not None:
                neg.departure_at = request.departure_at
            terms = Terms(neg.energy_kwh, neg.max_power_kw, neg.departure_at)
            decision = respond(policy, terms, now, neg.round, request.energy_price_per_kwh)
            neg.status = decision.status.value
            neg.detail = decision.detail
            row: OfferRow | None = None
            if decision.offer is not None:
                neg.round = decision.offer.round
                row = self._offer_row(neg.negotiation_id, decision.offer, now)
                session.add(row)
                neg.current_offer_id = row.offer_id
            await audit.record(
                session,
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
