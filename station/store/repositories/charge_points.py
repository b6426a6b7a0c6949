"""Charge points, read only, from the `charge_points` table (charging writes it)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from station.services.repositories.charge_points import ChargePoint
from station.store.charging import ChargePointRow


class SqlChargePoints:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, charge_point_id: str) -> ChargePoint | None:
        row = await self._session.get(ChargePointRow, charge_point_id)
        if row is None:
            return None
        return ChargePoint(row.charge_point_id, row.ocpp_version, row.connected, row.removed_at)
