"""Read models over the charging and payments tables (`station.services.repositories.reports`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.session import SessionStatus
from station.services.repositories.reports import ChargePointSummary, MoneyFigures
from station.store.charging import ChargePointRow, ConnectorRow
from station.store.payments import SessionRow

FINAL = tuple(s.value for s in SessionStatus if s.final)
HOLD_OPEN = "requires_capture"
HOLD_ENDED = ("succeeded", "canceled")
HOLDING = ("authorized", "charging", "stopping")
FINISHED = ("settled", "cancelled")


class SqlReports:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def charge_points(self) -> list[ChargePointSummary]:
        statuses: defaultdict[str, list[str]] = defaultdict(list)
        connectors = await self._session.scalars(
            select(ConnectorRow).order_by(
                ConnectorRow.charge_point_id, ConnectorRow.evse_id, ConnectorRow.connector_id
            )
        )
        for c in connectors:
            statuses[c.charge_point_id].append(f"{c.evse_id}/{c.connector_id} {c.status}")
        rows = await self._session.scalars(
            select(ChargePointRow)
            .where(ChargePointRow.removed_at.is_(None))
            .order_by(ChargePointRow.charge_point_id)
        )
        return [
            ChargePointSummary(
                r.charge_point_id,
                r.connected,
                r.ocpp_version,
                tuple(statuses.get(r.charge_point_id, ())),
                r.last_seen,
            )
            for r in rows
        ]

    async def connected_by_version(self) -> dict[str | None, int]:
        rows = await self._session.execute(
            select(ChargePointRow.ocpp_version, func.count())
            .where(ChargePointRow.connected.is_(True))
            .group_by(ChargePointRow.ocpp_version)
        )
        return {version: int(count) for version, count in rows.all()}

    async def sessions_by_status(self) -> dict[str, int]:
        rows = await self._session.execute(
            select(SessionRow.status, func.count()).group_by(SessionRow.status)
        )
        return {status: int(count) for status, count in rows.all()}

    async def _sum(self, amount: Any, *where: ColumnElement[bool]) -> dict[str, Decimal]:
        query: Select[Any] = (
            select(SessionRow.currency, func.sum(amount))
            .where(*where)
            .group_by(SessionRow.currency)
        )
        return _amounts((await self._session.execute(query)).all())

    async def money_by_hold(self) -> MoneyFigures:
        uncaptured = SessionRow.cap - func.coalesce(SessionRow.captured, 0)
        return MoneyFigures(
            held=await self._sum(
                SessionRow.cap,
                SessionRow.payment_status == HOLD_OPEN,
                SessionRow.status.not_in(FINAL),
            ),
            captured=await self._sum(SessionRow.captured, SessionRow.captured.is_not(None)),
            released=await self._sum(
                uncaptured,
                SessionRow.status.in_(FINAL),
                SessionRow.payment_reference.is_not(None),
                SessionRow.payment_status.in_(HOLD_ENDED),
            ),
        )

    async def money_by_session(self) -> MoneyFigures:
        uncaptured = SessionRow.cap - func.coalesce(SessionRow.captured, 0)
        return MoneyFigures(
            held=await self._sum(
                SessionRow.cap,
                SessionRow.status.in_(HOLDING),
                SessionRow.payment_reference.is_not(None),
            ),
            captured=await self._sum(SessionRow.captured, SessionRow.status == "settled"),
            released=await self._sum(
                uncaptured,
                SessionRow.status.in_(FINISHED),
                SessionRow.payment_reference.is_not(None),
            ),
        )


def _amounts(rows: Iterable[Any]) -> dict[str, Decimal]:
    return {str(row[0]): Decimal(row[1] or 0) for row in rows}
