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

    async def tariffs(self) -> dict[str, Tariff]:
        """Every stored tariff by charge point id (the default under ``"*"``)."""
        ...

    async def set_tariff(self, tariff: Tariff, charge_point_id: str | None = None) -> None:
        """Store the charge point's tariff (None: the default), created or replaced."""
        ...

    async def delete_tariff(self, charge_point_id: str | None = None) -> bool:
        """Drop the charge point's own tariff; False if it had none."""
        ...

    async def set_policy(self, policy: PricingPolicy, charge_point_id: str | None = None) -> None:
        """Store the charge point's pricing policy (None: the default)."""
        ...
