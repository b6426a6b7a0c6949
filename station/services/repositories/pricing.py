"""The stored prices: a tariff and a pricing policy per charge point, with a default."""

from __future__ import annotations

from typing import Protocol

from station.domain.negotiation import PricingPolicy
from station.domain.tariff import Tariff


class PricingRepository(Protocol):
    async def policy(self, charge_point_id: str | None = None) -> PricingPolicy | None:
        """The charge point's stored policy, else the default one (None: the default)."""
        ...

    async def tariff(self, charge_point_id: str | None = None) -> Tariff | None:
        """The charge point's stored tariff, else the default one."""
        ...
