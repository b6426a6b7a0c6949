"""Read models: the figures the dashboard and `/metrics` show, summed by the database.

Money is summed per currency (exact NUMERIC on PostgreSQL; on SQLite each
amount is already rounded to the minor unit, and the sum is rounded once by
the caller's `Money`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from station.domain.session import Session


@dataclass(frozen=True, slots=True)
class ChargePointSummary:
    charge_point_id: str
    connected: bool
    ocpp_version: str | None
    # "evse/connector status", ordered by evse then connector.
    connectors: tuple[str, ...]
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class MoneyFigures:
    """Per currency; each a sum, absent currencies hold nothing."""

    held: dict[str, Decimal] = field(default_factory=dict)
    captured: dict[str, Decimal] = field(default_factory=dict)
    released: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Every filter given must match; None matches all."""

    agent_id: str | None = None
    charge_point_id: str | None = None
    status: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before


@dataclass(frozen=True, slots=True)
class MeterSample:
    timestamp: datetime
    measurand: str
    phase: str | None
    context: str
    unit: str
    value: Decimal | None


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    detail: str
    timestamp: datetime | None


class Reports(Protocol):
    async def sessions(self, where: SessionFilter, *, limit: int) -> list[Session]:
        """Sessions matching `where`, newest first, at most `limit`."""
        ...

    async def meter_samples(self, transaction_id: int, *, limit: int) -> list[MeterSample]:
        """The transaction's samples in time order (ties by arrival), at most `limit`."""
        ...

    async def anomalies(self, transaction_id: int) -> list[Anomaly]:
        """The transaction's anomalies in the order they were recorded."""
        ...

    async def charge_points(self) -> list[ChargePointSummary]:
        """Charge points not removed, by id, with their connectors' statuses."""
        ...

    async def connected_by_version(self) -> dict[str | None, int]:
        """How many charge points are connected, per OCPP version (None: not known)."""
        ...

    async def sessions_by_status(self) -> dict[str, int]: ...

    async def money_by_hold(self) -> MoneyFigures:
        """From the holds' point of view (the dashboard): `held` = caps of holds open
        (payment status requires_capture) on sessions not final; `captured` = every
        captured amount; `released` = cap minus captured of final sessions whose hold
        ended (succeeded or canceled)."""
        ...

    async def money_by_session(self) -> MoneyFigures:
        """From the sessions' point of view (`/metrics`): `held` = caps of sessions
        authorized, charging or stopping that have a hold; `captured` = captures of
        settled sessions; `released` = cap minus captured of settled or cancelled
        sessions that had a hold."""
        ...
