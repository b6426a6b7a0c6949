"""Negotiations and offers on the `negotiations` and `offers` tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from station.errors import NotFound
from station.services.repositories.negotiations import LiveCount, Negotiation, Offer
from station.store.constraints import translated
from station.store.payments import NegotiationRow, OfferRow, SessionRow

_FIELDS = (
    "agent_id", "charge_point_id", "evse_id", "currency", "energy_kwh", "max_power_kw",
    "departure_at", "status", "round", "max_rounds", "expires_at", "created_at", "detail",
    "current_offer_id",
)  # fmt: skip


def negotiation_of(row: NegotiationRow) -> Negotiation:
    return Negotiation(
        negotiation_id=row.negotiation_id, **{name: getattr(row, name) for name in _FIELDS}
    )


def offer_of(row: OfferRow) -> Offer:
    return Offer(
        offer_id=row.offer_id,
        negotiation_id=row.negotiation_id,
        round=row.round,
        tariff=row.tariff,
        estimated_cost=row.estimated_cost,
        recommended_cap=row.recommended_cap,
        valid_until=row.valid_until,
        signature=row.signature,
        created_at=row.created_at,
    )


class SqlNegotiations:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, negotiation_id: str, *, lock: bool = False) -> Negotiation | None:
        row = await self._session.get(NegotiationRow, negotiation_id, with_for_update=lock)
        return negotiation_of(row) if row is not None else None

    async def add(self, negotiation: Negotiation) -> None:
        row = NegotiationRow(negotiation_id=negotiation.negotiation_id)
        for name in _FIELDS:
            setattr(row, name, getattr(negotiation, name))
        with translated(key="negotiation_id"):
            self._session.add(row)
            await self._session.flush()

    async def save(self, negotiation: Negotiation) -> None:
        row = await self._session.get(NegotiationRow, negotiation.negotiation_id)
        if row is None:
            raise NotFound(f"no negotiation {negotiation.negotiation_id}")
        for name in _FIELDS:
            setattr(row, name, getattr(negotiation, name))
        await self._session.flush()

    async def live(self, agent_id: str, *, statuses: tuple[str, ...], now: datetime) -> LiveCount:
        count, first_expiry = (
            await self._session.execute(
                select(func.count(), func.min(NegotiationRow.expires_at)).where(
                    NegotiationRow.agent_id == agent_id,
                    NegotiationRow.status.in_(statuses),
                    NegotiationRow.expires_at > now,
                    ~exists().where(SessionRow.negotiation_id == NegotiationRow.negotiation_id),
                )
            )
        ).one()
        return LiveCount(int(count), first_expiry)


class SqlOffers:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, offer_id: str) -> Offer | None:
        row = await self._session.get(OfferRow, offer_id)
        return offer_of(row) if row is not None else None

    async def add(self, offer: Offer) -> None:
        if await self._session.get(NegotiationRow, offer.negotiation_id) is None:
            raise NotFound(f"no negotiation {offer.negotiation_id}")
        with translated(key="offer_id"):
            self._session.add(
                OfferRow(
                    offer_id=offer.offer_id,
                    negotiation_id=offer.negotiation_id,
                    round=offer.round,
                    tariff=offer.tariff,
                    estimated_cost=offer.estimated_cost,
                    recommended_cap=offer.recommended_cap,
                    valid_until=offer.valid_until,
                    signature=offer.signature,
                    created_at=offer.created_at,
                )
            )
            await self._session.flush()
