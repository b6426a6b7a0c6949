"""Stored tariffs and pricing policies (`station.store.payments`), per charge point."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.negotiation import PricingPolicy
from station.domain.tariff import Tariff
from station.store import payments


class SqlPricing:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def policy(self, charge_point_id: str | None = None) -> PricingPolicy | None:
        return await payments.get_policy(self._session, charge_point_id)

    async def tariff(self, charge_point_id: str | None = None) -> Tariff | None:
        return await payments.get_tariff(self._session, charge_point_id)

    async def tariffs(self) -> dict[str, Tariff]:
        return await payments.list_tariffs(self._session)

    async def set_tariff(self, tariff: Tariff, charge_point_id: str | None = None) -> None:
        await payments.set_tariff(self._session, tariff, charge_point_id)

    async def delete_tariff(self, charge_point_id: str | None = None) -> bool:
        return await payments.delete_tariff(self._session, charge_point_id)

    async def set_policy(self, policy: PricingPolicy, charge_point_id: str | None = None) -> None:
        await payments.set_policy(self._session, policy, charge_point_id)
