"""Billing: the payments side's `TransactionListener` on the charging service.

A reading is billed inside the writer unit that stores it (`bill`): the
session its id token belongs to is loaded in that unit, the domain decides
(`station.domain.decide`: link the transaction, price what was delivered once,
continue, lower the limit or stop before the next sample passes the cap, and
at the end queue the settlement and record energy past the cap), and the new
session and its anomalies are staged in the same unit — so a reading and its
billing commit together, in the batch's one transaction, or not at all.
Once committed, the act `bill` returned carries out the decision's actions:
the running cost to the charge point when it changed (2.x CostUpdated; the cap as
``transactionLimit.maxCost`` on 2.1), a ``meter`` event to the agent, the stop
or the charging limit, the settlement request. When a charge point
reconnects, every stop its sessions are owed is sent again.

Runs inside OCPP handlers: it never awaits a station-initiated OCPP call
(``post_*`` only) and never calls Stripe (settlement runs on its own task).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from station.domain.decide import CAP_REACHED, decide
from station.domain.events import OcppVersion
from station.domain.session import Session, SessionStatus
from station.domain.session_actions import (
    Log,
    PublishMeter,
    PublishStatus,
    PushCost,
    RecordAnomaly,
    Reject,
    RequestSettlement,
    SessionAction,
    SetLimit,
    StopCharging,
)
from station.domain.session_events import Metered, TransactionEnded, TransactionReport
from station.logs import get_logger
from station.services.batching import Batcher
from station.services.ports import (
    Billing,
    ChargePointCommands,
    ReadingSessions,
    TransactionView,
)
from station.services.session_events import SessionEvents
from station.services.settlement import SettlementService
from station.store.db import Database
from station.store.payments import SessionRow, session_by_token

__all__ = ["CAP_REACHED", "BillingListener"]
_log = get_logger(__name__)
_UNBILLED = Billing()
# The versions the station holds to the cap with a charging limit (2.1 has maxCost).
_LIMITED = frozenset({OcppVersion.V16.value, OcppVersion.V201.value})


class BillingListener:
    def __init__(
        self,
        db: Database,
        events: SessionEvents,
        settlement: SettlementService,
        commands: ChargePointCommands,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._events = events
        self._settlement = settlement
        self._commands = commands
        self._now = clock
        # Stops owed to the charge points connecting meanwhile: one query for them all.
        self._owed: Batcher[str, None, list[tuple[str, str]]] = Batcher(
            self._stops_owed, name="billing-owed-stops"
        )

    async def id_token_accepted(self, charge_point_id: str, id_token: str) -> bool | None:
        async with self._db.reader() as session:
            row = await session_by_token(session, id_token)
            if row is None:
                return None
            return row.charge_point_id == charge_point_id and SessionStatus(row.status).can_charge

    def bill(
        self, sessions: ReadingSessions, transaction: TransactionView
    ) -> Callable[[], Billing]:
        """Inside the reading's writer unit: load, decide, save; the returned act runs
        after the commit (events, commands, settlement). No other effect in here: the
        unit may run more than once."""
        if transaction.id_token is None:
            return _nothing
        session = sessions.by_id_token(transaction.id_token)
        if session is None:
            return _nothing
        version = self._commands.ocpp_version(transaction.charge_point_id)
        report = _report(transaction)
        now = self._now()
        event = (
            TransactionEnded(report, at=now)
            if transaction.ended
            else Metered(report, at=now, can_limit=version in _LIMITED)
        )
        new, actions = decide(session, event)
        if session.metering.transaction_ref is not None and new.cost == session.cost:
            # The charge point heard this running cost already: a CostUpdated that says
            # nothing new is a frame each way (and two frame-log rows) for nothing.
            actions = [action for action in actions if not isinstance(action, PushCost)]
        if new is not session:
            sessions.save_reading(new)
        for action in actions:
            if isinstance(action, RecordAnomaly):
                sessions.add_anomaly(session.charge_point_id, action)
        on_21 = version == OcppVersion.V21.value
        return functools.partial(self._act, new, actions, on_21)

    def _act(self, session: Session, actions: list[SessionAction], on_21: bool) -> Billing:
        """After the commit: carry out a reading's actions, in their order."""
        commands = self._commands
        log = _log.bind(session_id=session.session_id, charge_point_id=session.charge_point_id)
        cap = session.cap.amount
        cost = session.cost.amount if session.cost is not None else None
        accepted = True
        for action in actions:
            match action:
                case PublishMeter():
                    self._events.publish(session.session_id, "meter", _meter_event(session, action))
                case PublishStatus(status=status):
                    self._events.publish(session.session_id, "status", {"status": status.value})
                case PushCost(charge_point_id=cp, transaction_ref=ref, cost=pushed):
                    commands.post_cost_updated(cp, ref, pushed.amount)
                case StopCharging(charge_point_id=cp, transaction_ref=ref):
                    if session.status.final:  # the station owns the stop: it asks again
                        log.warning("session.stop_resent", on="reading_after_end")
                    else:
                        log.info(
                            "session.stop_sent", cost=cost, cap=cap, reason=session.stop_reason
                        )
                    commands.post_stop_transaction(cp, ref)
                case SetLimit(charge_point_id=cp, transaction_ref=ref, limit=limit):
                    log.info(
                        "session.limit_sent", cost=cost, cap=cap,
                        limit_w=limit.limit_w, for_s=limit.duration_s,
                    )  # fmt: skip
                    commands.post_charging_limit(cp, ref, limit)
                case RequestSettlement():
                    log.info("session.transaction_ended", energy_wh=session.metering.energy_wh)
                    self._settlement.request(session.session_id)
                case Reject():
                    accepted = False
                case Log(event=name, level=level, fields=fields):
                    getattr(log, level)(name, **fields)
                case _:
                    pass  # RecordAnomaly: staged in the unit
        if not accepted:
            return Billing(id_token_accepted=False)
        return Billing(total_cost=cost, max_cost=cap if on_21 else None)

    async def charge_point_connected(self, charge_point_id: str) -> None:
        """Resend every stop its sessions are owed: a stop sent while it was away was lost.

        The stops owed to the charge points connecting meanwhile are read in one
        query (a reconnect storm: one per batch, not one per charge point).
        """
        commands = self._commands
        for session_id, ref in await self._owed.request(charge_point_id, None) or ():
            _log.info("session.stop_resent", session_id=session_id, on="reconnect")
            commands.post_stop_transaction(charge_point_id, ref)

    async def _stops_owed(self, ids: dict[str, None]) -> dict[str, list[tuple[str, str]]]:
        """The (session id, transaction ref) of each stop owed to these charge points."""
        owed: dict[str, list[tuple[str, str]]] = {}
        async with self._db.reader() as session:
            rows = await session.execute(
                select(
                    SessionRow.charge_point_id, SessionRow.session_id, SessionRow.transaction_ref
                ).where(
                    SessionRow.charge_point_id.in_(list(ids)),
                    SessionRow.status == SessionStatus.STOPPING.value,
                    SessionRow.transaction_ref.is_not(None),
                    SessionRow.stopped_at.is_(None),
                )
            )
            for charge_point_id, session_id, ref in rows:
                assert ref is not None  # selected with transaction_ref IS NOT NULL
                owed.setdefault(charge_point_id, []).append((session_id, ref))
        return owed


def _nothing() -> Billing:
    return _UNBILLED


def _report(tx: TransactionView) -> TransactionReport:
    return TransactionReport(
        charge_point_id=tx.charge_point_id,
        transaction_id=tx.transaction_id,
        transaction_ref=tx.transaction_ref,
        evse_id=tx.evse_id,
        started_at=tx.started_at,
        energy_wh=tx.energy_wh,
        meter_start_wh=tx.meter_start_wh,
        last_reading_at=tx.last_reading_at,
        power_w=tx.power_w,
        stopped_at=tx.stopped_at,
        stop_reason=tx.stop_reason,
    )


def _meter_event(session: Session, meter: PublishMeter) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "energy_kwh": str((meter.energy_wh / 1000).quantize(Decimal("0.001"))),
        "power_kw": str((meter.power_w / 1000).quantize(Decimal("0.001")))
        if meter.power_w is not None
        else None,
        "cost": meter.cost.to_wire(),
        "cap": meter.cap.to_wire(),
        "currency": session.currency,
        "at": meter.at.isoformat(),
    }
