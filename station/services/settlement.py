"""Settlement, exactly once: capture min(cost, cap) or release the hold.

    settle(session_id)
      unit 1  lock the session; no settlement row yet → compute the final
              cost, write the intent (settlements row: capture|cancel, amount,
              state=pending); commit                      ← the point of no return
      Stripe  capture(amount) / cancel, idempotency key = "settle_<session_id>"
      unit 2  settlement done; session settled|cancelled; limits.settle(); audit

A crash between the two units leaves a pending row. The reconciler (at
start-up and every ``reconcile_interval_s``) retrieves the PaymentIntent
first — so a capture that did land is recorded, never repeated — and only
captures/cancels when the hold is still open. It also releases holds whose
session can no longer charge (authorised but never started past
``session_start_timeout_s``), settles sessions whose transaction ended
while no worker was there to settle them, and settles for what was metered a
session whose charge point has been silent for 6 × ``session_start_timeout_s``
— silent meaning neither connected to this node nor seen (a heartbeat) by any
node for that long; a connected charge point that sends no meter values is
left charging. A stopping session whose transaction has not ended is told to
stop again on every pass, and ended by the station (settled, with an
``unbilled_energy`` anomaly) once its charge point has been connected to this
node for ``session_stop_timeout_s`` since the stop (counted by this process,
from pass to pass: time offline or while the station was down does not count —
at a simulated 600x, a few seconds of restart were hours of offline charging
whose backlog the charge point was still delivering). Likewise the silence and
the wait for a start from a charge point away count only from this process's
start: after a restart every charge point gets the whole period to come back.
It releases the hold of any session that ended with it still open, and
resolves a hold request whose outcome was never recorded by looking
(`_recover_hold`: find the PaymentIntent by the session's metadata, cancel it
if open), never by sending the request again.
A StopTransaction that arrives after a silence settlement, reporting more
energy than was billed, is recorded as an ``unbilled_energy`` anomaly (billing).

A session paid on the ``charge`` intent was charged its cap when it was
authorised; its settlement is a refund of the unused part (cap − min(cost,
cap)), by the same rules: the refund's intent (a settlements row, action
``refund``, amount and idempotency key ``refund_<session_id>``) is committed
before Stripe is called and the call is built from that row alone; a refund
of nothing makes no call; an unknown outcome is resolved by looking
(`find_refund`: the PaymentIntent's refunds, by the session's metadata) —
a refund found is recorded, none found is the same stored request again.

`request()` is what OCPP handlers call: it queues the session for the
settlement worker (owned by `run()`) and returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.cost import SessionCost, Usage, session_cost
from station.domain.money import Money
from station.domain.payment import HoldDecision, refund_due, resolve_hold
from station.domain.session import SessionStatus, advance
from station.domain.tariff import Tariff
from station.errors import PaymentUnavailable
from station.logs import get_logger
from station.services import limits
from station.services.gateway import (
    PaymentGateway,
    PaymentIntentState,
    PaymentSource,
    RefundState,
)
from station.services.ports import ChargePointCommands, held_here
from station.services.session_events import SessionEvents
from station.settings import Settings
from station.store import audit
from station.store.charging import AnomalyRow, ChargePointRow
from station.store.db import Database
from station.store.payments import SessionRow, SettlementRow, locked_session

_log = get_logger(__name__)
CRASH_AFTER_CAPTURE_INTENT = "crash_after_capture_intent"  # intent committed, Stripe not called
SILENCE_FACTOR = 6
CRASH_AFTER_CAPTURE = "crash_after_capture"  # Stripe captured, the outcome not recorded
CRASH_AFTER_REFUND_INTENT = "crash_after_refund_intent"  # refund intent committed, no call
CRASH_AFTER_REFUND = "crash_after_refund"  # Stripe refunded, the outcome not recorded
CHARGE = "charge"  # SessionRow.payment_intent of a session charged at once
HOLD_PENDING = "pending"  # payment_status while the hold request is in flight
HOLD_OPEN = "requires_capture"
# payment_status once the station gave up waiting for the hold's answer: the reconciler
# owns it from then on, and resolves it by looking (find_hold), never by sending it again.
HOLD_UNKNOWN = "unknown"
HOLD_LOOKBACK = timedelta(minutes=5)  # clock skew allowance when listing PaymentIntents
CHARGE_POINT_SILENT = "charge_point_silent"  # the stop reason of a silence settlement
STOP_IGNORED = "stop_ignored"  # the stop reason of a session the station ended itself
UNBILLED_ENERGY = "unbilled_energy"


def hold_request(row: SessionRow) -> dict[str, Any]:
    """The hold request of a session, from its stored row alone: the same on every try."""
    kind, _, value = (row.payment_source or ":").partition(":")
    return {
        "amount_minor": Money(row.cap, row.currency).to_minor_units(),
        "currency": row.currency,
        "source": PaymentSource(kind, value),
        "idempotency_key": f"hold_{row.challenge_id}",
        "metadata": {
            "session_id": row.session_id,
            "offer_id": row.offer_id,
            "agent_id": row.agent_id,
        },
        "capture_method": "automatic" if row.payment_intent == CHARGE else "manual",
    }


def refund_key(session_id: str) -> str:
    """The idempotency key of a charge session's refund (there is at most one)."""
    return f"refund_{session_id}"


def void_key(row: SessionRow) -> str:
    """The idempotency key of releasing a session's unused hold (a cancel has no body)."""
    return f"hold_{row.challenge_id}_void"


# A session whose transaction has not been reported: authorised, or stopped before its
# start came (a stop never cancels a session whose start may still come).
_UNSTARTED = (SessionStatus.AUTHORIZED.value, SessionStatus.STOPPING.value)


def _never_started(row: SessionRow) -> bool:
    return row.status in _UNSTARTED and row.transaction_ref is None and row.stopped_at is None


def usage_of(row: SessionRow, now: datetime) -> Usage:
    """What a session used, from its stored meter data."""
    if row.started_at is None:
        return Usage(energy_wh=Decimal(0))
    end = row.stopped_at or row.last_reading_at or now
    charging_s = max(Decimal((end - row.started_at).total_seconds()), Decimal(0))
    idle_s = Decimal(0)
    if row.last_active_at is not None:
        idle_s = max(Decimal((end - row.last_active_at).total_seconds()), Decimal(0))
    return Usage(
        energy_wh=max(row.energy_wh, Decimal(0)),
        charging_seconds=charging_s.quantize(Decimal(1)),
        idle_seconds=idle_s.quantize(Decimal(1)),
    )


def cost_of(row: SessionRow, now: datetime) -> SessionCost:
    return session_cost(
        Tariff.from_wire(row.tariff), usage_of(row, now), Money(row.cap, row.currency)
    )


class SettlementService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        gateway: PaymentGateway,
        events: SessionEvents,
        clock: Callable[[], datetime],
        commands: Callable[[], ChargePointCommands | None] = lambda: None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._gateway = gateway
        self._commands = commands
        self._events = events
        self._now = clock
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._lease = timedelta(seconds=2 * settings.stripe_timeout_s)
        # A charging session its charge point has not reported on for this long — and the
        # charge point itself neither connected here nor seen by any node for as long — is
        # settled for what was metered, so that its hold is never left open.
        self._silence = timedelta(seconds=SILENCE_FACTOR * settings.session_start_timeout_s)
        # The timers count only time this process could hear the charge point: its start,
        # and per stopping session the seconds its charge point was connected here.
        self._up_since = clock()
        self._last_pass: datetime | None = None
        # session id → (seconds connected since its stop, connected at the last pass)
        self._connected_s: dict[str, tuple[float, bool]] = {}
        # Likewise per session never started: seconds connected since it was authorised.
        self._start_wait_s: dict[str, tuple[float, bool]] = {}
        self._start_pass: datetime | None = None
        # Builds the receipt for the final SSE event (set by the wiring).
        self.receipt_for: Callable[[str], Awaitable[dict[str, Any]]] | None = None

    # -- entry points ------------------------------------------------------------------

    def request(self, session_id: str) -> None:
        """Queue a settlement; safe inside an OCPP handler; never raises."""
        self._queue.put_nowait(session_id)

    def stop(self) -> None:
        """Start no more settlements or reconcile passes; `run()` returns. Idempotent.

        Settlements still queued stay in the database as they are; the next
        start's reconciler finds them.
        """
        if not self._stopping.is_set():
            self._stopping.set()
            self._queue.put_nowait(None)

    async def run(self) -> None:
        """The settlement worker and the reconciler, until `stop()` or cancelled.

        After `stop()` it returns once the settlements and the reconcile pass
        in flight have finished. Safe to cancel (in-flight work is cut off).
        """
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._reconcile_forever())
            while (session_id := await self._queue.get()) is not None:
                tasks.create_task(self._settle_logged(session_id))

    async def _settle_logged(self, session_id: str) -> None:
        try:
            await self.settle(session_id)
        except Exception:
            _log.exception("settlement.failed", session_id=session_id)

    async def settle(
        self,
        session_id: str,
        *,
        reason: str | None = None,
        still: Callable[[SessionRow], bool] | None = None,
    ) -> None:
        """Settle a session whose charging is over (or never began). Idempotent.

        `still` is the reconciler's reason checked again under the session's lock (what
        it read may have changed since: a start reported, a silent charge point back).
        """
        now = self._now()
        log = _log.bind(session_id=session_id)
        waiting = moved = False
        settlement: SettlementRow | None = None
        async with self._db.session() as session:
            row = await locked_session(session, session_id)
            if row is None or SessionStatus(row.status).final:
                return
            if still is not None and not still(row):
                return
            if await session.get(SettlementRow, session_id) is not None:
                return  # someone else's settlement is in flight or done
            if row.payment_reference is None and row.payment_status in (HOLD_PENDING, HOLD_UNKNOWN):
                # The hold request is in flight or its outcome unknown: whoever placed it
                # finishes (it sees the session stopping and releases the hold), or the
                # reconciler resolves it by looking.
                moved = SessionStatus(row.status) is not SessionStatus.STOPPING
                row.status = advance(SessionStatus(row.status), SessionStatus.STOPPING).value
                if reason and row.stop_reason is None:
                    row.stop_reason = reason
                row.updated_at = now
                waiting = True
            elif row.payment_reference is None:
                row.status = advance(SessionStatus(row.status), SessionStatus.FAILED).value
                row.detail, row.updated_at = "no hold was placed", now
                await limits.settle(session, session_id=session_id, amount=Decimal(0))
            else:
                moved = SessionStatus(row.status) is not SessionStatus.STOPPING
                settlement = await self._intend(session, row, reason, now)
        if waiting:
            log.info("settlement.hold_pending")
            if moved:
                self._events.publish(session_id, "status", {"status": SessionStatus.STOPPING.value})
            return
        if settlement is None:
            self._events.publish(session_id, "status", {"status": SessionStatus.FAILED.value})
            return
        log.info("settlement.intended", action=settlement.action, amount=settlement.amount)
        if moved:
            self._events.publish(session_id, "status", {"status": SessionStatus.STOPPING.value})
        fault = self._settings.fault_inject
        if fault == CRASH_AFTER_CAPTURE_INTENT and settlement.action != "refund":
            log.warning("fault.crash_after_capture_intent")
            os._exit(70)
        if fault == CRASH_AFTER_REFUND_INTENT and settlement.action == "refund":
            log.warning("fault.crash_after_refund_intent")
            os._exit(72)
        await self._execute(settlement)

    async def _intend(
        self, session: AsyncSession, row: SessionRow, reason: str | None, now: datetime
    ) -> SettlementRow:
        """Stopping; the final cost; the settlements row (capture or cancel), in this unit."""
        assert row.payment_reference is not None
        status = SessionStatus(row.status)
        if status is not SessionStatus.STOPPING:
            row.status = advance(status, SessionStatus.STOPPING).value
        if reason and row.stop_reason is None:
            row.stop_reason = reason
        delivered = row.energy_wh > 0
        cost = cost_of(row, now)
        cap = Money(row.cap, row.currency)
        final = cost.total.min(cap) if delivered and cost.total.amount > 0 else cap * 0
        key = f"settle_{row.session_id}"
        if row.payment_intent == CHARGE:  # charged the cap: give back what was not used
            action, key = "refund", refund_key(row.session_id)
            back = refund_due(cap.to_minor_units(), final.rounded().to_minor_units())
            amount = Money.from_minor_units(back, row.currency).amount
        else:
            action = "capture" if final.amount > 0 else "cancel"
            amount = final.amount
        row.cost = cost.total.amount if delivered else Decimal(0)
        row.updated_at = now
        settlement = SettlementRow(
            session_id=row.session_id,
            action=action,
            amount=Decimal(amount),
            currency=row.currency,
            payment_reference=row.payment_reference,
            idempotency_key=key,
            state="pending",
            node_id=self._settings.node_id,
            attempts=0,
            created_at=now,
        )
        session.add(settlement)
        await audit.record(
            session,
            actor="system",
            action=f"settlement.{action}_intended",
            subject=row.session_id,
            data={"amount": str(settlement.amount), "reference": row.payment_reference},
        )
        return settlement

    # -- Stripe and completion ---------------------------------------------------------------

    async def _execute(self, settlement: SettlementRow) -> None:
        if settlement.action == "refund":
            await self._execute_refund(settlement)
            return
        key = settlement.idempotency_key
        try:
            if settlement.action == "capture":
                minor = Money(settlement.amount, settlement.currency).to_minor_units()
                state = await self._gateway.capture(
                    settlement.payment_reference, minor, idempotency_key=key
                )
            else:
                state = await self._gateway.cancel(
                    settlement.payment_reference, idempotency_key=key
                )
        except PaymentUnavailable as exc:
            await self._note_failure(settlement.session_id, str(exc))
            return
        if self._settings.fault_inject == CRASH_AFTER_CAPTURE:
            _log.warning("fault.crash_after_capture", session_id=settlement.session_id)
            os._exit(71)
        await self._complete(settlement.session_id, state)

    async def _execute_refund(self, settlement: SettlementRow) -> None:
        """The refund, built from its stored intent alone; a refund of nothing calls no one."""
        minor = Money(settlement.amount, settlement.currency).to_minor_units()
        refund: RefundState | None = None
        if minor > 0:
            try:
                refund = await self._gateway.refund(
                    settlement.payment_reference,
                    minor,
                    idempotency_key=settlement.idempotency_key,
                    metadata={"session_id": settlement.session_id},
                )
            except PaymentUnavailable as exc:
                await self._note_failure(settlement.session_id, str(exc))
                return
            if self._settings.fault_inject == CRASH_AFTER_REFUND:
                _log.warning("fault.crash_after_refund", session_id=settlement.session_id)
                os._exit(73)
        await self._complete_refund(settlement.session_id, refund)

    async def _complete_refund(self, session_id: str, refund: RefundState | None) -> None:
        """Record a charge session's refund: captured = charged − refunded."""
        now = self._now()
        async with self._db.session() as session:
            row = await locked_session(session, session_id)
            settlement = await session.get(SettlementRow, session_id, with_for_update=True)
            if row is None or settlement is None or settlement.state == "done":
                return
            if refund is not None and refund.status not in ("succeeded", "pending"):
                settlement.attempts += 1
                settlement.last_error = f"refund {refund.reference} is {refund.status}"
                _log.error("settlement.refund_failed", session_id=session_id, status=refund.status)
                return  # left pending for the operator: Stripe refused the money back
            charged = Money(row.cap, row.currency)
            back = Money.from_minor_units(refund.amount_minor if refund else 0, row.currency)
            row.refunded, row.captured = back.amount, (charged - back).amount
            target = SessionStatus.SETTLED if row.captured > 0 else SessionStatus.CANCELLED
            if not SessionStatus(row.status).final:
                row.status = advance(SessionStatus(row.status), target).value
            row.payment_status = "refunded" if refund is not None else "succeeded"
            row.updated_at = now
            settlement.state, settlement.completed_at = "done", now
            settlement.refund_reference = refund.reference if refund else None
            await limits.settle(session, session_id=session_id, amount=row.captured)
            await audit.record(
                session,
                actor="system",
                action="settlement.refunded",
                subject=session_id,
                data={
                    "charged": str(charged.amount),
                    "refunded": str(row.refunded),
                    "reference": row.payment_reference,
                    "refund": settlement.refund_reference,
                },
            )
            status = row.status
        _log.info("session.settled", session_id=session_id, status=status, refunded=back.amount)
        self._events.publish(session_id, "status", {"status": status})
        if self.receipt_for is not None and status == SessionStatus.SETTLED:
            self._events.publish(session_id, "settled", await self.receipt_for(session_id))
        else:
            self._events.publish(
                session_id, "settled", {"session_id": session_id, "status": status}
            )

    async def refund_charge(self, session_id: str, reference: str, detail: str) -> None:
        """A charge made for a session that will not use it: refund it all, exactly once.

        Records the PaymentIntent on the session and the refund's intent (the whole
        charge) in one unit, then refunds from that row. A session already settling
        (its settlements row exists) is left to that settlement.
        """
        now = self._now()
        async with self._db.session() as session:
            row = await locked_session(session, session_id)
            if row is None or await session.get(SettlementRow, session_id) is not None:
                return
            row.payment_reference = row.payment_reference or reference
            row.payment_status, row.detail, row.updated_at = "succeeded", detail, now
            settlement = SettlementRow(
                session_id=session_id,
                action="refund",
                amount=row.cap,
                currency=row.currency,
                payment_reference=row.payment_reference,
                idempotency_key=refund_key(session_id),
                state="pending",
                node_id=self._settings.node_id,
                attempts=0,
                created_at=now,
            )
            session.add(settlement)
            await audit.record(
                session,
                actor="system",
                action="settlement.refund_intended",
                subject=session_id,
                data={"amount": str(row.cap), "reference": row.payment_reference},
            )
        await self._execute(settlement)

    async def _note_failure(self, session_id: str, error: str) -> None:
        _log.warning("settlement.deferred", session_id=session_id, error=error)
        async with self._db.session() as session:
            row = await session.get(SettlementRow, session_id, with_for_update=True)
            if row is not None and row.state == "pending":
                row.attempts += 1
                row.last_error = error[:500]

    async def _complete(self, session_id: str, state: PaymentIntentState) -> None:
        now = self._now()
        async with self._db.session() as session:
            row = await locked_session(session, session_id)
            settlement = await session.get(SettlementRow, session_id, with_for_update=True)
            if row is None or settlement is None or settlement.state == "done":
                return
            captured = Money.from_minor_units(state.captured_minor, row.currency)
            if state.status == "succeeded":
                target, row.captured = SessionStatus.SETTLED, captured.amount
            elif state.status == "canceled":
                target, row.captured = SessionStatus.CANCELLED, Decimal(0)
            else:
                target = SessionStatus.FAILED
                row.detail = f"payment ended in {state.status}"
                row.captured = Decimal(0)
            row.status = advance(SessionStatus(row.status), target).value
            row.payment_status = state.status
            row.updated_at = now
            settlement.state, settlement.completed_at = "done", now
            await limits.settle(session, session_id=session_id, amount=row.captured)
            await audit.record(
                session,
                actor="system",
                action="settlement.captured"
                if target is SessionStatus.SETTLED
                else "settlement.cancelled",
                subject=session_id,
                data={
                    "captured": str(row.captured),
                    "reference": state.reference,
                    "status": state.status,
                },
            )
            status = row.status
        _log.info("session.settled", session_id=session_id, status=status, captured=row.captured)
        self._events.publish(session_id, "status", {"status": status})
        if self.receipt_for is not None and status == SessionStatus.SETTLED:
            receipt = await self.receipt_for(session_id)
            self._events.publish(session_id, "settled", receipt)
        else:
            self._events.publish(
                session_id, "settled", {"session_id": session_id, "status": status}
            )

    # -- the reconciler ----------------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        first = True
        while not self._stopping.is_set():
            try:
                await self.reconcile(startup=first)
            except Exception:
                _log.exception("reconcile.failed")
            first = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.reconcile_interval_s):
                    await self._stopping.wait()

    async def reconcile(self, *, startup: bool = False) -> int:
        """One pass; returns how many sessions it acted on."""
        now = self._now()
        node = self._settings.node_id
        async with self._db.reader() as session:
            pending = (
                await session.scalars(select(SettlementRow).where(SettlementRow.state == "pending"))
            ).all()
            stale = [
                s
                for s in pending
                if (startup and s.node_id == node) or s.created_at < now - self._lease
            ]
            never_started = (
                await session.execute(
                    select(
                        SessionRow.session_id, SessionRow.charge_point_id, SessionRow.created_at
                    ).where(
                        SessionRow.status.in_(_UNSTARTED),
                        SessionRow.transaction_ref.is_(None),
                        SessionRow.stopped_at.is_(None),
                        SessionRow.payment_reference.is_not(None),
                        SessionRow.created_at
                        < now - timedelta(seconds=self._settings.session_start_timeout_s),
                    )
                )
            ).all()
            ended = (
                await session.scalars(
                    select(SessionRow.session_id).where(
                        SessionRow.status == SessionStatus.STOPPING.value,
                        SessionRow.stopped_at.is_not(None),
                        SessionRow.updated_at < now - self._lease,
                    )
                )
            ).all()
            quiet = (
                await session.execute(
                    select(
                        SessionRow.session_id,
                        SessionRow.status,
                        SessionRow.charge_point_id,
                        SessionRow.transaction_ref,
                        SessionRow.stopped_at,
                        ChargePointRow.last_seen,
                    )
                    .outerjoin(
                        ChargePointRow,
                        ChargePointRow.charge_point_id == SessionRow.charge_point_id,
                    )
                    .where(
                        SessionRow.status.in_(
                            (SessionStatus.CHARGING.value, SessionStatus.STOPPING.value)
                        ),
                        SessionRow.updated_at < now - self._silence,
                    )
                )
            ).all()
            unstopped = (
                await session.execute(
                    select(
                        SessionRow.session_id,
                        SessionRow.charge_point_id,
                        SessionRow.transaction_ref,
                        SessionRow.stop_requested_at,
                    ).where(
                        SessionRow.status == SessionStatus.STOPPING.value,
                        SessionRow.transaction_ref.is_not(None),
                        SessionRow.stopped_at.is_(None),
                    )
                )
            ).all()
            orphaned = (
                await session.scalars(
                    select(SessionRow.session_id).where(
                        SessionRow.status.in_([s.value for s in SessionStatus if s.final]),
                        SessionRow.payment_status == HOLD_OPEN,
                        SessionRow.payment_reference.is_not(None),
                    )
                )
            ).all()
            unpaid = (
                await session.scalars(
                    select(SessionRow.session_id).where(
                        SessionRow.payment_reference.is_(None),
                        SessionRow.payment_status.in_((HOLD_PENDING, HOLD_UNKNOWN)),
                        SessionRow.created_at < now - self._lease,
                    )
                )
            ).all()
            session.expunge_all()  # keep the rows loaded past the reader's rollback
        for settlement in stale:
            await self._repair(settlement)
        commands = self._commands()
        timed_out = 0
        heard_since = max(self._up_since, now - self._silence)
        since_start_pass = (
            0.0 if self._start_pass is None else (now - self._start_pass).total_seconds()
        )
        self._start_pass = now
        waiting = {row[0] for row in never_started}
        self._start_wait_s = {k: v for k, v in self._start_wait_s.items() if k in waiting}
        start_timeout_s = self._settings.session_start_timeout_s
        for session_id, charge_point_id, created_at in never_started:
            # A charge point away from this node may have started offline and not told us
            # yet (its queue is delivered on reconnect): wait for it, up to the silence.
            away = commands is not None and not commands.is_connected(charge_point_id)
            known = self._start_wait_s.get(session_id)
            if away:
                self._start_wait_s[session_id] = ((known or (0.0, False))[0], False)
                if max(created_at, self._up_since) >= heard_since:
                    continue
            elif commands is not None:
                # Connected: only the time it was connected counts (back from an outage,
                # its start comes after the backlog queued before it).
                if known is None:
                    waited = (now - max(created_at, self._up_since)).total_seconds()
                else:
                    waited = known[0] + (since_start_pass if known[1] else 0.0)
                self._start_wait_s[session_id] = (waited, True)
                if waited <= start_timeout_s:
                    continue
            _log.info("reconcile.start_timeout", session_id=session_id)
            await self.settle(session_id, reason="start_timeout", still=_never_started)
            timed_out += 1
        for session_id in ended:
            await self.settle(session_id)
        silent = [
            q.session_id
            for q in quiet
            if self._up_since < now - self._silence
            and self._is_silent(q.charge_point_id, q.last_seen, now)
        ]
        ignored = await self._stop_again([u for u in unstopped if u.session_id not in silent], now)
        for session_id in set(silent) - set(ended):
            _log.warning("reconcile.charge_point_silent", session_id=session_id)
            await self.settle(
                session_id,
                reason=CHARGE_POINT_SILENT,
                still=lambda row: row.updated_at < now - self._silence,
            )
        for session_id in unpaid:
            await self._recover_hold(session_id)
        for session_id in orphaned:
            _log.warning("reconcile.open_hold_on_ended_session", session_id=session_id)
            await self.release_hold(session_id)
        acted = (
            len(ignored)
            + len(stale)
            + timed_out
            + len(set(ended) | set(silent))
            + len(unpaid)
            + len(orphaned)
        )
        if acted:
            _log.info("reconcile.pass", acted=acted, startup=startup)
        return acted

    def _is_silent(self, charge_point_id: str, last_seen: datetime | None, now: datetime) -> bool:
        """Has the charge point gone quiet (not only its meter)? Connected here, or seen by
        any node within the silence threshold (a heartbeat), it has not: a charge point
        that sends no periodic meter values reports the energy when the transaction ends.
        """
        commands = self._commands()
        if commands is not None and commands.is_connected(charge_point_id):
            return False
        return last_seen is None or last_seen < now - self._silence

    async def _stop_again(self, unstopped: list[Any], now: datetime) -> list[str]:
        """Stopping sessions whose transaction has not ended: the station owns the stop.

        Each pass sends the stop again to a charge point connected here (however
        recently it sent meter values). One that has ignored stops for
        ``session_stop_timeout_s`` has its session ended by the station: settled for
        what was metered (at most the cap), with an ``unbilled_energy`` anomaly for
        whatever it delivers after. Returns the sessions so ended.
        """
        commands = self._commands()
        timeout_s = self._settings.session_stop_timeout_s
        since_last = 0.0 if self._last_pass is None else (now - self._last_pass).total_seconds()
        self._last_pass = now
        counted = {u.session_id for u in unstopped}
        self._connected_s = {k: v for k, v in self._connected_s.items() if k in counted}
        ended: list[str] = []
        for u in unstopped:
            if u.stop_requested_at is None:  # asked before the time was kept: count from now
                await self._note_stop_requested(u.session_id, now)
            # Connected time since the stop (every second, without a central system): a
            # pass adds the time since the last one if the charge point was held here
            # at both.
            connected = commands is None or held_here(commands, u.charge_point_id)
            known = self._connected_s.get(u.session_id)
            if known is None:
                # First seen by this process: from the stop if this process was up then.
                asked = max(u.stop_requested_at or now, self._up_since)
                elapsed = max((now - asked).total_seconds(), 0.0) if connected else 0.0
            else:
                elapsed = known[0] + (since_last if connected and known[1] else 0.0)
            self._connected_s[u.session_id] = (elapsed, connected)
            if u.stop_requested_at is not None and elapsed > timeout_s:
                await self._end_ignored(u.session_id, u.stop_requested_at, now)
                self._connected_s.pop(u.session_id, None)
                ended.append(u.session_id)
                continue
            # With several nodes, the node holding the charge point repeats the stop.
            if commands is not None and held_here(commands, u.charge_point_id):
                _log.warning("reconcile.stop_repeated", session_id=u.session_id)
                commands.post_stop_transaction(u.charge_point_id, u.transaction_ref)
        return ended

    async def _note_stop_requested(self, session_id: str, now: datetime) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(SessionRow)
                .where(SessionRow.session_id == session_id, SessionRow.stop_requested_at.is_(None))
                .values(stop_requested_at=now)
            )

    async def _end_ignored(self, session_id: str, asked_at: datetime, now: datetime) -> None:
        """End a session whose charge point ignored its stops; the rest is unbilled."""
        async with self._db.session() as session:
            row = await session.get(SessionRow, session_id)
            if row is None or row.status != SessionStatus.STOPPING.value or row.stopped_at:
                return
            _log.warning(
                "reconcile.stop_ignored",
                session_id=session_id,
                charge_point_id=row.charge_point_id,
                energy_wh=row.energy_wh,
            )
            session.add(
                AnomalyRow(
                    charge_point_id=row.charge_point_id,
                    transaction_id=row.transaction_id,
                    kind=UNBILLED_ENERGY,
                    detail=(
                        f"session {row.session_id}: the charge point ignored stops from"
                        f" {asked_at.isoformat()}; the station ended it at {row.energy_wh} Wh"
                        " (at most the cap is captured); energy delivered after is not billed"
                    ),
                    timestamp=now,
                )
            )
        await self.settle(session_id, reason=STOP_IGNORED, still=lambda row: row.stopped_at is None)

    async def release_hold(self, session_id: str) -> None:
        """Release the hold of a session that has ended but whose hold is still open.

        Looks first (retrieve) and cancels only a hold still ``requires_capture``, with
        an idempotency key of its own; records what Stripe says. Safe to repeat; a
        Stripe outage leaves it for the reconciler's next pass.
        """
        log = _log.bind(session_id=session_id)
        async with self._db.reader() as session:
            row = await session.get(SessionRow, session_id)
            session.expunge_all()
        if row is None or row.payment_reference is None or not SessionStatus(row.status).final:
            return
        reference = row.payment_reference
        if row.payment_intent == CHARGE:  # charged, not held: the money goes back as a refund
            await self.refund_charge(session_id, reference, "the session ended; refunded")
            return
        try:
            state = await self._gateway.retrieve(reference)
            if state.status == HOLD_OPEN:
                state = await self._gateway.cancel(
                    reference, idempotency_key=f"release_{session_id}"
                )
        except PaymentUnavailable as exc:
            log.warning("reconcile.release_deferred", error=exc.detail)
            return
        async with self._db.session() as session:
            locked = await locked_session(session, session_id)
            if locked is None or locked.payment_status != HOLD_OPEN:
                return
            locked.payment_status, locked.updated_at = state.status, self._now()
            locked.detail = "the session ended before its hold was placed; the hold was released"
            await audit.record(
                session,
                actor="system",
                action="payment.hold_released",
                subject=session_id,
                data={"reference": reference, "status": state.status},
            )
        log.info("settlement.hold_released", reference=reference, payment_status=state.status)

    async def _recover_hold(self, session_id: str) -> None:
        """A hold request whose outcome was never recorded: look, then release what is open.

        Claims the session first (``payment_status`` pending → unknown, so an accept
        still running never adopts it), finds the PaymentIntent made for the session
        (`find_hold`, by its metadata), cancels it if it is open, and ends the session
        failed with its allowance released. A Stripe outage leaves it for the next pass.
        """
        log = _log.bind(session_id=session_id)
        async with self._db.session() as session:
            row = await locked_session(session, session_id)
            if row is None or row.payment_reference is not None:
                return
            if row.payment_status not in (HOLD_PENDING, HOLD_UNKNOWN):
                return
            row.payment_status = HOLD_UNKNOWN
            session.expunge(row)
        try:
            found = await self._gateway.find_hold(
                session_id, created_after=row.created_at - HOLD_LOOKBACK
            )
            charged = row.payment_intent == CHARGE
            decision = resolve_hold(
                found.status if found else None, may_adopt=False, charged=charged
            )
            state = found
            if found is not None and decision is HoldDecision.REFUND:
                # Charged at once: the money goes back through a recorded refund intent.
                await self.refund_charge(
                    session_id, found.reference, "the charge's outcome was unknown; refunded"
                )
                return
            if found is not None and decision is HoldDecision.RELEASE:
                state = await self._gateway.cancel(found.reference, idempotency_key=void_key(row))
        except PaymentUnavailable as exc:
            log.warning("reconcile.hold_unknown", error=exc.detail)
            return
        async with self._db.session() as session:
            locked = await locked_session(session, session_id)
            if locked is None or locked.payment_reference is not None:
                return
            if state is not None:
                locked.payment_reference, locked.payment_status = state.reference, state.status
            else:
                locked.payment_status = "none"
            moved = not SessionStatus(locked.status).final
            if moved:
                locked.status = advance(SessionStatus(locked.status), SessionStatus.FAILED).value
            locked.detail = (
                "the hold's outcome was unknown; it was released"
                if state is not None
                else "the hold's outcome was unknown; Stripe made none"
            )
            locked.updated_at = self._now()
            await limits.settle(session, session_id=session_id, amount=Decimal(0))
            await audit.record(
                session,
                actor="system",
                action="payment.hold_recovered",
                subject=session_id,
                data={
                    "reference": locked.payment_reference,
                    "status": locked.payment_status,
                    "decision": decision.value,
                },
            )
        log.info("reconcile.hold_resolved", reference=locked.payment_reference, decision=decision)
        if moved:
            self._events.publish(session_id, "status", {"status": SessionStatus.FAILED.value})

    async def _repair(self, settlement: SettlementRow) -> None:
        """Finish an interrupted settlement: look first, act only on an open hold."""
        log = _log.bind(session_id=settlement.session_id)
        if settlement.action == "refund":
            await self._repair_refund(settlement)
            return
        try:
            state = await self._gateway.retrieve(settlement.payment_reference)
        except PaymentUnavailable as exc:
            await self._note_failure(settlement.session_id, str(exc))
            return
        log.info("reconcile.repair", payment_status=state.status, action=settlement.action)
        if state.status == "requires_capture":
            await self._execute(settlement)
        else:
            await self._complete(settlement.session_id, state)

    async def _repair_refund(self, settlement: SettlementRow) -> None:
        """Finish an intended refund: look for it first; only if none was made, make it
        (the same stored request and key)."""
        minor = Money(settlement.amount, settlement.currency).to_minor_units()
        found: RefundState | None = None
        if minor > 0:
            try:
                found = await self._gateway.find_refund(
                    settlement.payment_reference, settlement.session_id
                )
            except PaymentUnavailable as exc:
                await self._note_failure(settlement.session_id, str(exc))
                return
        _log.info(
            "reconcile.repair",
            session_id=settlement.session_id,
            action="refund",
            found=found.reference if found else None,
        )
        if minor > 0 and found is None:
            await self._execute_refund(settlement)
        else:
            await self._complete_refund(settlement.session_id, found)
