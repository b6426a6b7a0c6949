"""Read models over the charging and payments tables (`station.services.repositories.reports`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.session import Session, SessionStatus
from station.services.repositories.reports import (
    Anomaly,
    ChargePointSummary,
    MeterSample,
    MoneyFigures,
    SessionFilter,
)
from station.store.charging import AnomalyRow, ChargePointRow, ConnectorRow, MeterSampleRow
from station.store.payments import SessionRow
from station.store.repositories.sessions import session_of

FINAL = tuple(s.value for s in SessionStatus if s.final)
HOLD_OPEN = "requires_capture"
HOLD_ENDED = ("succeeded", "canceled")
HOLDING = ("authorized", "charging", "stopping")
FINISHED = ("settled", "cancelled")


class SqlReports:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def sessions(self, where: SessionFilter, *, limit: int) -> list[Session]:
        query = select(SessionRow).order_by(SessionRow.created_at.desc()).limit(limit)
        if where.agent_id is not None:
            query = query.where(SessionRow.agent_id == where.agent_id)
        if where.charge_point_id is not None:
            query = query.where(SessionRow.charge_point_id == where.charge_point_id)
        if where.status is not None:
            query = query.where(SessionRow.status == where.status)
        if where.since is not None:
            query = query.where(SessionRow.created_at >= where.since)
        if where.until is not None:
            query = query.where(SessionRow.created_at < where.until)
        return [session_of(row) for row in (await self._session.scalars(query)).all()]

    async def meter_samples(self, transaction_id: int, *, limit: int) -> list[MeterSample]:
        rows = await self._session.scalars(
            select(MeterSampleRow)
            .where(MeterSampleRow.transaction_id == transaction_id)
            .order_by(MeterSampleRow.timestamp, MeterSampleRow.id)
            .limit(limit)
        )
        return [
            MeterSample(s.timestamp, s.measurand, s.phase, s.context, s.unit, s.value) for s in rows
        ]

    async def anomalies(self, transaction_id: int) -> list[Anomaly]:
        rows = await self._session.scalars(
            select(AnomalyRow)
            .where(AnomalyRow.transaction_id == transaction_id)
            .order_by(AnomalyRow.id)
        )
        return [Anomaly(a.kind, a.detail, a.timestamp) for a in rows]

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
