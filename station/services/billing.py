"""Billing: the payments side's `TransactionListener` on the charging service.

For each committed change of a transaction it links the transaction to the
session by id token, prices what was delivered, tells the charge point the
running cost (2.x CostUpdated; the cap as ``transactionLimit.maxCost`` on
2.1), streams a ``meter`` event to the agent, and stops the charge point
*before* the cost passes the cap: when the next sample — projected from the
current power over the last sample interval — would pass it. When the
transaction ends the session is queued for settlement. The cap is checked in
every non-terminal state: a stopping session still delivering past it is
told to stop again at once (billing never exceeds the cap: capture is
min(cost, cap)). When a charge point reconnects, every stop its sessions
are owed is sent again. A transaction that ends
after its session was settled (the reconciler gave its charge point up as silent)
with more energy than was billed is recorded as an ``unbilled_energy`` anomaly.

Runs inside OCPP handlers: it never awaits a station-initiated OCPP call
(``post_*`` only) and never calls Stripe (settlement runs on its own task).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.cap import CapAction, ChargingLimit, PastTheCap, decide_cap, past_the_cap
from station.domain.events import OcppVersion
from station.domain.money import Money
from station.domain.session import SessionStatus, advance
from station.domain.tariff import Tariff
from station.logs import get_logger
from station.services.ports import Billing, ChargePointCommands, TransactionView
from station.services.session_events import SessionEvents
from station.services.settlement import UNBILLED_ENERGY, SettlementService, usage_of
from station.store.charging import AnomalyRow
from station.store.db import Database
from station.store.payments import SessionRow, locked_session, session_by_token

_log = get_logger(__name__)
DEFAULT_INTERVAL_S = Decimal(60)
CAP_REACHED = "cap_reached"
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

    async def id_token_accepted(self, charge_point_id: str, id_token: str) -> bool | None:
        async with self._db.reader() as session:
            row = await session_by_token(session, id_token)
            if row is None:
                return None
            return row.charge_point_id == charge_point_id and SessionStatus(row.status).can_charge

    async def transaction_updated(self, transaction: TransactionView) -> Billing:
        if transaction.id_token is None:
            return Billing()
        now = self._now()
        stop = settle = False
        limit: ChargingLimit | None = None
        commands = self._commands
        version = commands.ocpp_version(transaction.charge_point_id)
        async with self._db.session() as session:
            found = await session_by_token(session, transaction.id_token)
            if found is None:
                return Billing()
            row = await locked_session(session, found.session_id)
            assert row is not None
            if row.charge_point_id != transaction.charge_point_id:
                return Billing(id_token_accepted=False)
            if row.transaction_ref not in (None, transaction.transaction_ref):
                return Billing(id_token_accepted=False)  # one transaction per session
            status = SessionStatus(row.status)
            if status.final:
                if transaction.ended and transaction.energy_wh > row.energy_wh:
                    _record_unbilled(session, row, transaction)
                if not transaction.ended:
                    self._stop_after_end(row, transaction)
                return Billing(id_token_accepted=False)
            # A stopping session still reporting a live transaction has not stopped: the
            # stop is sent again with every such reading.
            stop = status is SessionStatus.STOPPING and not transaction.ended
            interval = _interval(row.last_reading_at, transaction.last_reading_at)
            self._update(row, transaction, now)
            if status is SessionStatus.AUTHORIZED:
                status = advance(status, SessionStatus.CHARGING)
            cap = Money(row.cap, row.currency)
            tariff = Tariff.from_wire(row.tariff)
            usage = usage_of(row, now)
            # The one decision of a reading (and its one cost computation): continue,
            # lower the limit, or stop now — in every non-terminal state, so a stopping
            # session still delivering near its cap is held and told to stop again.
            decision = decide_cap(
                status, tariff, cap, usage, transaction.power_w, interval,
                can_limit=version in _LIMITED and not transaction.ended,
            )  # fmt: skip
            total = decision.cost.min(cap.rounded())
            row.cost = total.amount
            if transaction.ended:
                status = advance(status, SessionStatus.STOPPING)
                settle = True
                past = past_the_cap(tariff, usage, cap)
                if past is not None:
                    _record_past_the_cap(session, row, transaction, past)
            elif decision.action is CapAction.STOP:
                if status is not SessionStatus.STOPPING:
                    status = advance(status, SessionStatus.STOPPING)
                    row.stop_reason = CAP_REACHED
                row.stop_requested_at = row.stop_requested_at or now
                stop = True
            elif decision.action is CapAction.LIMIT:
                assert decision.limit_w is not None and decision.duration_s is not None
                limit = ChargingLimit(
                    transaction.evse_id,
                    decision.limit_w,
                    transaction.last_reading_at or now,
                    decision.duration_s,
                )
            changed = status.value != row.status
            row.status, row.updated_at = status.value, now
            session_id, charge_point_id = row.session_id, row.charge_point_id
            meter = _meter_event(row, transaction, total)
        log = _log.bind(session_id=session_id, charge_point_id=charge_point_id)
        self._events.publish(session_id, "meter", meter)
        if changed:
            self._events.publish(session_id, "status", {"status": status.value})
        if not transaction.ended:
            commands.post_cost_updated(charge_point_id, transaction.transaction_ref, row.cost)
            if stop:
                log.info("session.stop_sent", cost=row.cost, cap=row.cap, reason=row.stop_reason)
                commands.post_stop_transaction(charge_point_id, transaction.transaction_ref)
            elif limit is not None:
                log.info(
                    "session.limit_sent", cost=row.cost, cap=row.cap,
                    limit_w=limit.limit_w, for_s=limit.duration_s,
                )  # fmt: skip
                commands.post_charging_limit(charge_point_id, transaction.transaction_ref, limit)
        if settle:
            log.info("session.transaction_ended", energy_wh=row.energy_wh)
            self._settlement.request(session_id)
        on_21 = version == OcppVersion.V21.value
        return Billing(total_cost=total.amount, max_cost=row.cap if on_21 else None)

    def _stop_after_end(self, row: SessionRow, tx: TransactionView) -> None:
        """Delivering for a session that is over (stopped before its start was reported,
        or ended by the station): the station owns the stop, so it asks again."""
        _log.warning("session.stop_resent", session_id=row.session_id, on="reading_after_end")
        self._commands.post_stop_transaction(row.charge_point_id, tx.transaction_ref)

    async def charge_point_connected(self, charge_point_id: str) -> None:
        """Resend every stop its sessions are owed: a stop sent while it was away was lost."""
        commands = self._commands
        async with self._db.reader() as session:
            owed = (
                await session.execute(
                    select(SessionRow.session_id, SessionRow.transaction_ref).where(
                        SessionRow.charge_point_id == charge_point_id,
                        SessionRow.status == SessionStatus.STOPPING.value,
                        SessionRow.transaction_ref.is_not(None),
                        SessionRow.stopped_at.is_(None),
                    )
                )
            ).all()
        for session_id, ref in owed:
            assert ref is not None  # selected with transaction_ref IS NOT NULL
            _log.info("session.stop_resent", session_id=session_id, on="reconnect")
            commands.post_stop_transaction(charge_point_id, ref)

    @staticmethod
    def _update(row: SessionRow, tx: TransactionView, now: datetime) -> None:
        if row.transaction_ref is None:
            row.transaction_ref = tx.transaction_ref
            row.transaction_id = tx.transaction_id
            row.started_at = tx.started_at
        if row.meter_start_wh is None and tx.meter_start_wh is not None:
            row.meter_start_wh = tx.meter_start_wh
        if tx.energy_wh > row.energy_wh:
            row.last_active_at = tx.last_reading_at or now
        row.energy_wh = max(tx.energy_wh, Decimal(0))
        if tx.last_reading_at is not None:
            row.last_reading_at = tx.last_reading_at
        if tx.ended:
            row.stopped_at = tx.stopped_at or tx.last_reading_at or now
            row.stop_reason = row.stop_reason or tx.stop_reason
            if row.meter_start_wh is not None:
                row.meter_stop_wh = row.meter_start_wh + row.energy_wh


def _interval(previous: datetime | None, latest: datetime | None) -> Decimal:
    """The meter interval: the time between the last two readings, else a minute."""
    if previous is not None and latest is not None:
        seconds = Decimal(str((latest - previous).total_seconds()))
        if seconds > 0:
            return seconds
    return DEFAULT_INTERVAL_S


def _record_past_the_cap(
    session: AsyncSession, row: SessionRow, tx: TransactionView, past: PastTheCap
) -> None:
    """Energy the charge point delivered past the cap: the capture stops at the cap, so the
    operator gives it away; an ``unbilled_energy`` anomaly with its amount."""
    _log.warning(
        "session.unbilled_energy",
        session_id=row.session_id,
        charge_point_id=row.charge_point_id,
        unbilled_wh=past.energy_wh,
        unbilled=past.amount.to_wire(),
        on="past_the_cap",
    )
    session.add(
        AnomalyRow(
            charge_point_id=row.charge_point_id,
            transaction_id=tx.transaction_id,
            kind=UNBILLED_ENERGY,
            detail=(
                f"session {row.session_id} delivered {past.energy_wh} Wh past its cap of"
                f" {Money(row.cap, row.currency).to_wire()} {row.currency}:"
                f" {past.amount.to_wire()} {row.currency} not billed"
            ),
            timestamp=tx.stopped_at or tx.last_reading_at,
        )
    )


def _record_unbilled(session: AsyncSession, row: SessionRow, tx: TransactionView) -> None:
    """A transaction ended after its session was settled (a charge point given up on as
    silent, back later) with more energy than was billed: an anomaly for the operator."""
    unbilled = tx.energy_wh - row.energy_wh
    _log.warning(
        "session.unbilled_energy",
        session_id=row.session_id,
        charge_point_id=row.charge_point_id,
        billed_wh=row.energy_wh,
        reported_wh=tx.energy_wh,
    )
    session.add(
        AnomalyRow(
            charge_point_id=row.charge_point_id,
            transaction_id=tx.transaction_id,
            kind=UNBILLED_ENERGY,
            detail=(
                f"session {row.session_id} was {row.status} ({row.stop_reason or 'no reason'})"
                f" for {row.energy_wh} Wh; the charge point then reported {tx.energy_wh} Wh"
                f" ({unbilled} Wh not billed)"
            ),
            timestamp=tx.stopped_at or tx.last_reading_at,
        )
    )


def _meter_event(row: SessionRow, tx: TransactionView, cost: Money) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "energy_kwh": str((row.energy_wh / 1000).quantize(Decimal("0.001"))),
        "power_kw": str((tx.power_w / 1000).quantize(Decimal("0.001")))
        if tx.power_w is not None
        else None,
        "cost": cost.to_wire(),
        "cap": Money(row.cap, row.currency).to_wire(),
        "currency": row.currency,
        "at": (tx.last_reading_at or tx.started_at).isoformat(),
    }
