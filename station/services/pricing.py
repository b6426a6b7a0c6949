"""The pricing policy in force at a charge point: stored, else built from Settings."""

from __future__ import annotations

from station.domain.negotiation import PricingPolicy
from station.services.unit_of_work import UnitOfWork
from station.settings import Settings


def default_policy(settings: Settings) -> PricingPolicy:
    return PricingPolicy(
        currency=settings.default_currency,
        list_price_per_kwh=max(settings.list_price_per_kwh, settings.floor_price_per_kwh),
        floor_price_per_kwh=settings.floor_price_per_kwh,
        session_fee=settings.session_fee,
        max_rounds=settings.negotiation_max_rounds,
    )


async def effective_policy(
    uow: UnitOfWork, settings: Settings, charge_point_id: str
) -> PricingPolicy:
    """The stored policy (charge point's, else default) with the stored tariff's prices."""
    policy = await uow.pricing.policy(charge_point_id) or default_policy(settings)
    tariff = await uow.pricing.tariff(charge_point_id)
    return policy.with_list_tariff(tariff) if tariff is not None else policy
