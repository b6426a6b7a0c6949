"""Charge points as the payment services see them (read only: charging owns the rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChargePoint:
    charge_point_id: str
    ocpp_version: str | None
    connected: bool
    removed_at: datetime | None


class ChargePointRepository(Protocol):
    async def get(self, charge_point_id: str) -> ChargePoint | None: ...
