"""The pricing policy in force at a charge point: stored, else built from Settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.negotiation import PricingPolicy
from station.settings import Settings
from station.store import payments as store


def default_policy(settings: Settings) -> PricingPolicy:
    return PricingPolicy(
        currency=settings.default_currency,
        list_price_per_kwh=max(settings.list_price_per_kwh, settings.floor_price_per_kwh),
        floor_price_per_kwh=settings.floor_price_per_kwh,
        session_fee=settings.session_fee,
        max_rounds=settings.negotiation_max_rounds,
    )


async def effective_policy(
    session: AsyncSession, settings: Settings, charge_point_id: str
) -> PricingPolicy:
    """The stored policy (charge point's, else default) with the stored tariff's prices."""
    policy = await store.get_policy(session, charge_point_id) or default_policy(settings)
    tariff = await store.get_tariff(session, charge_point_id)
    return policy.with_list_tariff(tariff) if tariff is not None else policy
