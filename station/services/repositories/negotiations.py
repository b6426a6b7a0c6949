"""Negotiations and their offers (PROTOCOL §2) as stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Negotiation:
    negotiation_id: str
    agent_id: str
    charge_point_id: str
    evse_id: int
    currency: str
    energy_kwh: Decimal
    max_power_kw: Decimal | None
    departure_at: datetime | None
    status: str  # a station.domain.negotiation.NegotiationStatus value
    round: int
    max_rounds: int
    expires_at: datetime
    created_at: datetime
    detail: str | None = None
    current_offer_id: str | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    offer_id: str
    negotiation_id: str
    round: int
    tariff: dict[str, Any]  # the tariff's wire document
    estimated_cost: Decimal
    recommended_cap: Decimal
    valid_until: datetime
    signature: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LiveCount:
    """An agent's live negotiations: how many, and when the first of them expires."""

    count: int
    first_expiry: datetime | None


class NegotiationRepository(Protocol):
    async def get(self, negotiation_id: str, *, lock: bool = False) -> Negotiation | None: ...

    async def add(self, negotiation: Negotiation) -> None:
        """AlreadyExists if the id is taken."""
        ...

    async def save(self, negotiation: Negotiation) -> None:
        """NotFound if absent."""
        ...

    async def live(self, agent_id: str, *, statuses: tuple[str, ...], now: datetime) -> LiveCount:
        """The agent's negotiations in `statuses` that expire after `now` and were not
        accepted yet (an accepted one stays agreed until it expires, but holds no place)."""
        ...


class OfferRepository(Protocol):
    async def get(self, offer_id: str) -> Offer | None: ...

    async def add(self, offer: Offer) -> None:
        """AlreadyExists if the id is taken; NotFound if its negotiation is not stored."""
        ...
