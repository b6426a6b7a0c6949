"""The sessions repository on SQLAlchemy (h3 owns it): `Session` aggregates in and out of rows.

A session is its ``sessions`` row and its ``settlements`` row (the intent,
once written). `lock` reads both ``FOR UPDATE`` (SQLite's writing units hold
the write lock already); `save` writes the aggregate back onto the rows it
loaded (only the changed columns reach the database) and adds the
settlement row when the intent is new. The stored strings are the enums'
values: no migration.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.money import Money
from station.domain.session import (
    Metering,
    MppIntent,
    Payment,
    PaymentStatus,
    Session,
    SessionStatus,
)
from station.domain.settlement import Settlement, SettlementAction, SettlementState
from station.errors import NotFound
from station.services.repositories.sessions import (
    OpenSession,
    PendingSettlement,
    Quiet,
    Unstarted,
    Unstopped,
)
from station.services.unit_of_work import AlreadyExists
from station.store.charging import AnomalyRow, ChargePointRow
from station.store.constraints import constraint_name, is_unique_violation
from station.store.payments import LIVE_NEGOTIATION_INDEX, SessionRow, SettlementRow
from station.store.trust import AgentRow

_METERING = tuple(f.name for f in fields(Metering))
_LIVE = tuple(s.value for s in SessionStatus if not s.final)
_OPEN = (SessionStatus.AUTHORIZED.value, SessionStatus.CHARGING.value)
_ENDED_UNPAID = (SessionStatus.FAILED.value, SessionStatus.CANCELLED.value)
_FINAL = tuple(s.value for s in SessionStatus if s.final)
_FREES_NEGOTIATION = (SessionStatus.FAILED.value, SessionStatus.CANCELLED.value)
# No transaction reported: authorised, or stopped before its start came.
_UNSTARTED = (SessionStatus.AUTHORIZED.value, SessionStatus.STOPPING.value)
_IN_DOUBT = (PaymentStatus.PENDING.value, PaymentStatus.UNKNOWN.value)


def session_of(row: SessionRow, settlement: SettlementRow | None = None) -> Session:
    """The aggregate of a stored session (and its settlement row, if any)."""

    def money(value: Decimal | None) -> Money | None:
        return None if value is None else Money(value, row.currency)

    return Session(
        session_id=row.session_id,
        agent_id=row.agent_id,
        negotiation_id=row.negotiation_id,
        offer_id=row.offer_id,
        challenge_id=row.challenge_id,
        charge_point_id=row.charge_point_id,
        evse_id=row.evse_id,
        id_token=row.id_token,
        remote_start_id=row.remote_start_id,
        tariff_doc=row.tariff,
        cap=Money(row.cap, row.currency),
        status=SessionStatus(row.status),
        payment=Payment(
            intent=MppIntent(row.payment_intent or MppIntent.AUTHORIZE),
            status=PaymentStatus(row.payment_status),
            source=row.payment_source,
            reference=row.payment_reference,
            payer_method=row.payer_method,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
        metering=Metering(**{name: getattr(row, name) for name in _METERING}),
        cost=money(row.cost),
        captured=money(row.captured),
        refunded=money(row.refunded),
        detail=row.detail,
        stop_reason=row.stop_reason,
        stop_requested_at=row.stop_requested_at,
        settlement=None if settlement is None else settlement_of(settlement),
    )


def settlement_of(row: SettlementRow) -> Settlement:
    return Settlement(
        action=SettlementAction(row.action),
        amount=Money(row.amount, row.currency),
        payment_reference=row.payment_reference,
        idempotency_key=row.idempotency_key,
        node_id=row.node_id,
        created_at=row.created_at,
        state=SettlementState(row.state),
        attempts=row.attempts or 0,
        last_error=row.last_error,
        completed_at=row.completed_at,
        refund_reference=row.refund_reference,
    )


def new_row(session: Session) -> SessionRow:
    row = SessionRow(session_id=session.session_id)
    write_row(row, session)
    return row


def write_row(row: SessionRow, s: Session) -> None:
    """Set the row's columns from the aggregate (unchanged values are no-ops)."""

    def amount(value: Money | None) -> Decimal | None:
        return None if value is None else value.amount

    values = {
        "agent_id": s.agent_id,
        "negotiation_id": s.negotiation_id,
        "offer_id": s.offer_id,
        "challenge_id": s.challenge_id,
        "charge_point_id": s.charge_point_id,
        "evse_id": s.evse_id,
        "id_token": s.id_token,
        "remote_start_id": s.remote_start_id,
        "tariff": dict(s.tariff_doc),
        "cap": s.cap.amount,
        "currency": s.currency,
        "status": s.status.value,
        "detail": s.detail,
        "cost": amount(s.cost) if s.cost is not None else Decimal(0),
        "captured": amount(s.captured),
        "refunded": amount(s.refunded),
        "stop_reason": s.stop_reason,
        "stop_requested_at": s.stop_requested_at,
        "payment_reference": s.payment.reference,
        "payment_status": s.payment.status.value,
        "payment_source": s.payment.source,
        "payment_intent": s.payment.intent.value,
        "payer_method": s.payment.payer_method,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        **{name: getattr(s.metering, name) for name in _METERING},
    }
    for name, value in values.items():
        if getattr(row, name, None) != value:
            setattr(row, name, value)


def write_settlement(row: SettlementRow, session_id: str, s: Settlement) -> None:
    values = {
        "session_id": session_id,
        "action": s.action.value,
        "amount": s.amount.amount,
        "currency": s.amount.currency,
        "payment_reference": s.payment_reference,
        "idempotency_key": s.idempotency_key,
        "state": s.state.value,
        "node_id": s.node_id,
        "attempts": s.attempts,
        "last_error": s.last_error,
        "created_at": s.created_at,
        "completed_at": s.completed_at,
        "refund_reference": s.refund_reference,
    }
    for name, value in values.items():
        if getattr(row, name, None) != value:
            setattr(row, name, value)


class SqlSessions:
    """The sessions repository of one unit of work (an `AsyncSession`)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._rows: dict[str, tuple[SessionRow, SettlementRow | None]] = {}

    async def get(self, session_id: str, *, lock: bool = False) -> Session | None:
        """The session (with its settlement intent); `lock`: ``FOR UPDATE`` until the
        unit ends (SQLite's writing units hold the write lock already)."""
        query = select(SessionRow).where(SessionRow.session_id == session_id)
        row = (await self._session.scalars(query.with_for_update() if lock else query)).first()
        if row is None:
            return None
        settlement = await self._session.get(SettlementRow, session_id, with_for_update=lock)
        self._rows[session_id] = (row, settlement)
        return session_of(row, settlement)

    async def by_id_token(self, id_token: str, *, lock: bool = False) -> Session | None:
        found = await self._session.scalar(
            select(SessionRow.session_id).where(SessionRow.id_token == id_token)
        )
        return None if found is None else await self.get(found, lock=lock)

    async def add(self, session: Session) -> None:
        """A new session. A second live session of one negotiation is
        ``AlreadyExists(key="negotiation")`` (a partial unique index backs the check)."""
        row = new_row(session)
        try:
            async with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            name = constraint_name(exc)
            key = "negotiation" if name in (None, LIVE_NEGOTIATION_INDEX) else name
            raise AlreadyExists(f"{key} already exists", key=key) from exc
        self._rows[session.session_id] = (row, None)

    async def save(self, session: Session) -> None:
        """Write a session back, with its settlement intent (added once, then updated)."""
        loaded = self._rows.get(session.session_id)
        if loaded is None:
            row = await self._session.get(SessionRow, session.session_id)
            if row is None:
                raise NotFound(f"no session {session.session_id}")
            loaded = (row, await self._session.get(SettlementRow, session.session_id))
        row, settlement = loaded
        write_row(row, session)
        if session.settlement is not None:
            if settlement is None:
                settlement = SettlementRow(session_id=session.session_id)
                write_settlement(settlement, session.session_id, session.settlement)
                self._session.add(settlement)
            else:
                write_settlement(settlement, session.session_id, session.settlement)
        self._rows[session.session_id] = (row, settlement)
        await self._session.flush()

    async def live_session_of_agent(self, agent_id: str) -> str | None:
        query = (
            select(SessionRow.session_id)
            .where(SessionRow.agent_id == agent_id, SessionRow.status.in_(_LIVE))
            .limit(1)
        )
        return (await self._session.scalars(query)).first()

    async def open_of_suspended_agents(self, agent_id: str | None = None) -> list[OpenSession]:
        query = (
            select(
                SessionRow.session_id,
                SessionRow.agent_id,
                SessionRow.charge_point_id,
                SessionRow.transaction_ref,
            )
            .join(AgentRow, AgentRow.agent_id == SessionRow.agent_id)
            .where(AgentRow.status == "suspended", SessionRow.status.in_(_OPEN))
            .order_by(SessionRow.created_at)
        )
        if agent_id is not None:
            query = query.where(SessionRow.agent_id == agent_id)
        return [OpenSession(*row) for row in (await self._session.execute(query)).all()]

    async def mark_stop_reason(self, session_id: str, reason: str) -> None:
        await self._session.execute(
            update(SessionRow)
            .where(SessionRow.session_id == session_id, SessionRow.stop_reason.is_(None))
            .values(stop_reason=reason)
        )

    async def spent_by_payer_method(
        self, agent_id: str, payer_method: str, *, since: datetime
    ) -> Decimal:
        spent = await self._session.scalar(
            select(
                func.coalesce(func.sum(func.coalesce(SessionRow.captured, SessionRow.cap)), 0)
            ).where(
                SessionRow.agent_id == agent_id,
                SessionRow.payer_method == payer_method,
                SessionRow.created_at >= since,
                SessionRow.status.not_in(_ENDED_UNPAID),
            )
        )
        return Decimal(spent or 0)

    async def live_session_of_negotiation(self, negotiation_id: str) -> str | None:
        query = (
            select(SessionRow.session_id)
            .where(
                SessionRow.negotiation_id == negotiation_id,
                SessionRow.status.not_in(_FREES_NEGOTIATION),
            )
            .limit(1)
        )
        return (await self._session.scalars(query)).first()

    async def record_anomaly(
        self,
        session: Session,
        *,
        kind: str,
        detail: str,
        transaction_id: int | None,
        at: datetime | None,
    ) -> None:
        self._session.add(
            AnomalyRow(
                charge_point_id=session.charge_point_id,
                transaction_id=transaction_id,
                kind=kind,
                detail=detail,
                timestamp=at,
            )
        )

    async def pending_settlements(self) -> list[PendingSettlement]:
        rows = await self._session.execute(
            select(SettlementRow.session_id, SettlementRow.node_id, SettlementRow.created_at)
            .where(SettlementRow.state == SettlementState.PENDING.value)
            .order_by(SettlementRow.created_at)
        )
        return [PendingSettlement(*row) for row in rows]

    async def unstarted(self, created_before: datetime) -> list[Unstarted]:
        rows = await self._session.execute(
            select(SessionRow.session_id, SessionRow.charge_point_id, SessionRow.created_at).where(
                SessionRow.status.in_(_UNSTARTED),
                SessionRow.transaction_ref.is_(None),
                SessionRow.stopped_at.is_(None),
                SessionRow.payment_reference.is_not(None),
                SessionRow.created_at < created_before,
            )
        )
        return [Unstarted(*row) for row in rows]

    async def ended_unsettled(self, updated_before: datetime) -> list[str]:
        query = select(SessionRow.session_id).where(
            SessionRow.status == SessionStatus.STOPPING.value,
            SessionRow.stopped_at.is_not(None),
            SessionRow.updated_at < updated_before,
        )
        return list((await self._session.scalars(query)).all())

    async def quiet(self, updated_before: datetime) -> list[Quiet]:
        rows = await self._session.execute(
            select(SessionRow.session_id, SessionRow.charge_point_id, ChargePointRow.last_seen)
            .outerjoin(ChargePointRow, ChargePointRow.charge_point_id == SessionRow.charge_point_id)
            .where(
                SessionRow.status.in_((SessionStatus.CHARGING.value, SessionStatus.STOPPING.value)),
                SessionRow.updated_at < updated_before,
            )
        )
        return [Quiet(*row) for row in rows]

    async def unstopped(self, charge_point_id: str | None = None) -> list[Unstopped]:
        query = select(
            SessionRow.session_id,
            SessionRow.charge_point_id,
            SessionRow.transaction_ref,
            SessionRow.stop_requested_at,
        ).where(
            SessionRow.status == SessionStatus.STOPPING.value,
            SessionRow.transaction_ref.is_not(None),
            SessionRow.stopped_at.is_(None),
        )
        if charge_point_id is not None:
            query = query.where(SessionRow.charge_point_id == charge_point_id)
        rows = await self._session.execute(query)
        return [Unstopped(sid, cp, ref or "", asked) for sid, cp, ref, asked in rows]

    async def ended_with_open_hold(self) -> list[str]:
        query = select(SessionRow.session_id).where(
            SessionRow.status.in_(_FINAL),
            SessionRow.payment_status == PaymentStatus.REQUIRES_CAPTURE.value,
            SessionRow.payment_reference.is_not(None),
        )
        return list((await self._session.scalars(query)).all())

    async def holds_in_doubt(self, created_before: datetime) -> list[str]:
        query = select(SessionRow.session_id).where(
            SessionRow.payment_reference.is_(None),
            SessionRow.payment_status.in_(_IN_DOUBT),
            SessionRow.created_at < created_before,
        )
        return list((await self._session.scalars(query)).all())
