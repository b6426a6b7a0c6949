"""Load → decide → save, and carrying out the actions every service shares.

`decide_locked` loads a session locked, decides an event, saves the new
session and records the in-unit actions, in one unit of work. `record` runs
inside that unit (the audit row, an anomaly, the spending allowance:
committed with the session or not at all); `announce` runs after the commit
(log lines, the agent's events, OCPP commands queued on the connection).
Stripe calls, settlements started in turn and refusals are the calling
service's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from station.domain import decide as rules
from station.domain.session import Session, SessionStatus
from station.domain.session_actions import (
    Audit,
    Log,
    PublishMeter,
    PublishSettled,
    PublishStatus,
    PushCost,
    RecordAnomaly,
    SessionAction,
    SetLimit,
    SettleAllowance,
    StopCharging,
)
from station.domain.session_events import SessionEvent
from station.logs import get_logger
from station.services import limits
from station.services.ports import ChargePointCommands
from station.services.session_events import SessionEvents
from station.store import audit
from station.store.db import Database
from station.store.repositories.sessions import SqlSessions
from station.store.unit_of_work import SqlUnitOfWork

_log = get_logger("station.services.sessions")

ReceiptFor = Callable[[str], Awaitable[dict[str, Any]]]


async def decide_locked(
    db: Database, session_id: str, event: SessionEvent
) -> tuple[Session | None, Session | None, list[SessionAction]]:
    """The session before and after `event`, and the actions left to carry out (all of
    them: the in-unit ones are already recorded). (None, None, []) if no such session."""
    async with db.session() as unit:
        sessions = SqlSessions(unit)
        before = await sessions.get(session_id, lock=True)
        if before is None:
            return None, None, []
        after, actions = rules.decide(before, event)
        if after != before:
            await sessions.save(after)
        await record(unit, after, actions)
    return before, after, actions


async def record(db: AsyncSession, session: Session, actions: Iterable[SessionAction]) -> None:
    """The actions that belong to the session's own unit of work."""
    sessions = SqlSessions(db)
    for action in actions:
        match action:
            case Audit(action=name, data=data, actor=actor):
                await audit.record(
                    db, actor=actor, action=name, subject=session.session_id, data=dict(data)
                )
            case RecordAnomaly(kind=kind, detail=detail, transaction_id=tx, at=at):
                await sessions.record_anomaly(
                    session, kind=kind, detail=detail, transaction_id=tx, at=at
                )
            case SettleAllowance(spent=spent):
                await limits.settle(
                    SqlUnitOfWork.bound(db), session_id=session.session_id, amount=spent
                )
            case _:
                pass


async def announce(
    session: Session,
    actions: Iterable[SessionAction],
    events: SessionEvents,
    *,
    commands: ChargePointCommands | None = None,
    receipt_for: ReceiptFor | None = None,
) -> None:
    """The actions told after the commit: logs, the agent's events, queued OCPP calls."""
    log = _log.bind(session_id=session.session_id, charge_point_id=session.charge_point_id)
    sid = session.session_id
    for action in actions:
        match action:
            case Log(event=event, level=level, fields=fields):
                getattr(log, level)(event, **fields)
            case PublishStatus(status=status):
                events.publish(sid, "status", {"status": status.value})
            case PublishSettled(status=status):
                if receipt_for is not None and status is SessionStatus.SETTLED:
                    events.publish(sid, "settled", await receipt_for(sid))
                else:
                    events.publish(sid, "settled", {"session_id": sid, "status": status.value})
            case PublishMeter():
                events.publish(sid, "meter", meter_event(session, action))
            case PushCost(charge_point_id=cp, transaction_ref=ref, cost=cost):
                if commands is not None:
                    commands.post_cost_updated(cp, ref, cost.amount)
            case StopCharging(charge_point_id=cp, transaction_ref=ref):
                if commands is not None:
                    commands.post_stop_transaction(cp, ref)
            case SetLimit(charge_point_id=cp, transaction_ref=ref, limit=limit):
                if commands is not None:
                    commands.post_charging_limit(cp, ref, limit)
            case _:
                pass


def meter_event(session: Session, m: PublishMeter) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "energy_kwh": str((m.energy_wh / 1000).quantize(Decimal("0.001"))),
        "power_kw": str((m.power_w / 1000).quantize(Decimal("0.001")))
        if m.power_w is not None
        else None,
        "cost": m.cost.to_wire(),
        "cap": m.cap.to_wire(),
        "currency": session.currency,
        "at": m.at.isoformat(),
    }
