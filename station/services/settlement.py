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
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from station.domain import decide as rules
from station.domain.payment import HoldDecision, resolve_hold
from station.domain.session import PaymentStatus, Session, SessionStatus
from station.domain.session_actions import (
    Cancel,
    Capture,
    PlaceHold,
    Refund,
    RefundCharge,
    SessionAction,
    Settle,
)
from station.domain.session_events import (
    ChargeRefundDue,
    HoldClaimed,
    HoldRecovered,
    HoldReleased,
    PaymentSettled,
    Refunded,
    SessionEvent,
    SettlementDeferred,
    SettlementDue,
    StartTimedOut,
    StopRequested,
    StopsIgnored,
    WentSilent,
)
from station.errors import PaymentUnavailable
from station.logs import get_logger
from station.services import session_effects
from station.services.gateway import (
    PaymentGateway,
    PaymentIntentState,
    PaymentSource,
    RefundState,
)
from station.services.ports import ChargePointCommands
from station.services.repositories.sessions import Unstopped
from station.services.session_effects import ReceiptFor
from station.services.session_events import SessionEvents
from station.settings import Settings
from station.store.db import Database
from station.store.repositories.sessions import SqlSessions

_log = get_logger(__name__)
CRASH_AFTER_CAPTURE_INTENT = "crash_after_capture_intent"  # intent committed, Stripe not called
SILENCE_FACTOR = 6
CRASH_AFTER_CAPTURE = "crash_after_capture"  # Stripe captured, the outcome not recorded
CRASH_AFTER_REFUND_INTENT = "crash_after_refund_intent"  # refund intent committed, no call
CRASH_AFTER_REFUND = "crash_after_refund"  # Stripe refunded, the outcome not recorded
# The stored strings, for the queries (the values of the domain's enums).
HOLD_PENDING = PaymentStatus.PENDING.value  # payment_status while the hold request is in flight
HOLD_OPEN = PaymentStatus.REQUIRES_CAPTURE.value
# payment_status once the station gave up waiting for the hold's answer: the reconciler
# owns it from then on, and resolves it by looking (find_hold), never by sending it again.
HOLD_UNKNOWN = PaymentStatus.UNKNOWN.value
HOLD_LOOKBACK = timedelta(minutes=5)  # clock skew allowance when listing PaymentIntents
CHARGE_POINT_SILENT = rules.CHARGE_POINT_SILENT
STOP_IGNORED = rules.STOP_IGNORED
UNBILLED_ENERGY = rules.UNBILLED_ENERGY
# A session whose transaction has not been reported: authorised, or stopped before its
# start came (a stop never cancels a session whose start may still come).
_UNSTARTED = (SessionStatus.AUTHORIZED.value, SessionStatus.STOPPING.value)
# Events after which a Stripe call is a settlement's first (its intent just committed).
_INTENDING = (SettlementDue, StartTimedOut, WentSilent, StopsIgnored)


def hold_kwargs(hold: PlaceHold) -> dict[str, Any]:
    """The gateway's `authorize` arguments of a hold request."""
    return {
        "amount_minor": hold.amount_minor,
        "currency": hold.currency,
        "source": PaymentSource(hold.source_kind, hold.source_value),
        "idempotency_key": hold.idempotency_key,
        "metadata": dict(hold.metadata),
        "capture_method": hold.capture_method,
    }


class SettlementService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        gateway: PaymentGateway,
        events: SessionEvents,
        clock: Callable[[], datetime],
        commands: ChargePointCommands | None = None,
        receipt_for: ReceiptFor | None = None,
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
        # Builds the receipt for the final SSE event (`SessionReceipts.event`).
        self.receipt_for = receipt_for

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

    async def settle(self, session_id: str, *, reason: str | None = None) -> None:
        """Settle a session whose charging is over (or never began). Idempotent."""
        await self.decide(session_id, SettlementDue(self._now(), self._settings.node_id, reason))

    async def decide(
        self, session_id: str, event: SessionEvent
    ) -> tuple[Session | None, Session | None]:
        """Load (locked) → decide → save → act: the session before and after `event`.

        The audit, anomaly and allowance actions commit with the session; the rest
        (events to the agent, Stripe calls and what follows them) come after.
        """
        before, after, actions = await session_effects.decide_locked(self._db, session_id, event)
        if after is None:
            return None, None
        await self._act(after, actions, intending=isinstance(event, _INTENDING))
        return before, after

    async def _act(
        self, session: Session, actions: list[SessionAction], *, intending: bool
    ) -> None:
        await session_effects.announce(
            session,
            actions,
            self._events,
            commands=self._commands,
            receipt_for=self.receipt_for,
        )
        for action in actions:
            match action:
                case Capture() | Cancel() | Refund():
                    if intending:
                        self._crash_after_intent(session.session_id, action)
                    await self._call(session.session_id, action)
                case RefundCharge(reference=reference, detail=detail):
                    await self.refund_charge(session.session_id, reference, detail)
                case Settle(reason=reason):
                    await self.settle(session.session_id, reason=reason)
                case _:
                    pass

    def _crash_after_intent(self, session_id: str, call: SessionAction) -> None:
        fault = self._settings.fault_inject
        if fault == CRASH_AFTER_CAPTURE_INTENT and not isinstance(call, Refund):
            _log.warning("fault.crash_after_capture_intent", session_id=session_id)
            os._exit(70)
        if fault == CRASH_AFTER_REFUND_INTENT and isinstance(call, Refund):
            _log.warning("fault.crash_after_refund_intent", session_id=session_id)
            os._exit(72)

    # -- Stripe and completion ---------------------------------------------------------------

    async def _call(self, session_id: str, call: Capture | Cancel | Refund) -> None:
        """Make the settlement's Stripe call (built from its intent alone) and record
        the outcome; an unreachable Stripe leaves the intent pending for the reconciler."""
        fault = self._settings.fault_inject
        outcome: SessionEvent
        try:
            match call:
                case Capture(reference=ref, amount=amount, idempotency_key=key):
                    state = await self._gateway.capture(
                        ref, amount.to_minor_units(), idempotency_key=key
                    )
                    outcome = self._settled(state)
                case Cancel(reference=ref, idempotency_key=key):
                    outcome = self._settled(await self._gateway.cancel(ref, idempotency_key=key))
                case Refund(reference=ref, amount=amount, idempotency_key=key, metadata=meta):
                    minor = amount.to_minor_units()
                    refund: RefundState | None = None
                    if minor > 0:  # a refund of nothing calls no one
                        refund = await self._gateway.refund(
                            ref, minor, idempotency_key=key, metadata=dict(meta)
                        )
                        if fault == CRASH_AFTER_REFUND:
                            _log.warning("fault.crash_after_refund", session_id=session_id)
                            os._exit(73)
                    outcome = self._refunded(refund)
        except PaymentUnavailable as exc:
            outcome = SettlementDeferred(str(exc), self._now())
        made = not isinstance(outcome, SettlementDeferred)
        if fault == CRASH_AFTER_CAPTURE and made and not isinstance(call, Refund):
            _log.warning("fault.crash_after_capture", session_id=session_id)
            os._exit(71)
        await self.decide(session_id, outcome)

    def _settled(self, state: PaymentIntentState) -> PaymentSettled:
        return PaymentSettled(state.reference, state.status, state.captured_minor, self._now())

    def _refunded(self, refund: RefundState | None) -> Refunded:
        if refund is None:
            return Refunded(None, None, 0, self._now())
        return Refunded(refund.reference, refund.status, refund.amount_minor, self._now())

    async def refund_charge(self, session_id: str, reference: str, detail: str) -> None:
        """A charge made for a session that will not use it: refund it all, exactly once.

        Records the PaymentIntent on the session and the refund's intent (the whole
        charge) in one unit, then refunds from that intent. A session already settling
        (its settlement intent exists) is left to that settlement.
        """
        event = ChargeRefundDue(reference, detail, self._now(), self._settings.node_id)
        await self.decide(session_id, event)

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
        start_timeout = timedelta(seconds=self._settings.session_start_timeout_s)
        async with self._db.reader() as unit:
            sessions = SqlSessions(unit)
            pending = await sessions.pending_settlements()
            stale = [
                s
                for s in pending
                if (startup and s.node_id == node) or s.created_at < now - self._lease
            ]
            never_started = await sessions.unstarted(now - start_timeout)
            ended = await sessions.ended_unsettled(now - self._lease)
            quiet = await sessions.quiet(now - self._silence)
            unstopped = await sessions.unstopped()
            orphaned = await sessions.ended_with_open_hold()
            unpaid = await sessions.holds_in_doubt(now - self._lease)
        for settlement in stale:
            await self._repair(settlement.session_id)
        commands = self._commands
        timed_out = 0
        heard_since = max(self._up_since, now - self._silence)
        since_start_pass = (
            0.0 if self._start_pass is None else (now - self._start_pass).total_seconds()
        )
        self._start_pass = now
        waiting = {u.session_id for u in never_started}
        self._start_wait_s = {k: v for k, v in self._start_wait_s.items() if k in waiting}
        start_timeout_s = self._settings.session_start_timeout_s
        for unstarted in never_started:
            session_id, charge_point_id = unstarted.session_id, unstarted.charge_point_id
            created_at = unstarted.created_at
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
            await self.decide(session_id, StartTimedOut(self._now(), node))
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
            await self.decide(session_id, WentSilent(now - self._silence, self._now(), node))
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
        commands = self._commands
        if commands is not None and commands.is_connected(charge_point_id):
            return False
        return last_seen is None or last_seen < now - self._silence

    async def _stop_again(self, unstopped: list[Unstopped], now: datetime) -> list[str]:
        """Stopping sessions whose transaction has not ended: the station owns the stop.

        Each pass sends the stop again to a charge point connected here (however
        recently it sent meter values). One that has ignored stops for
        ``session_stop_timeout_s`` has its session ended by the station: settled for
        what was metered (at most the cap), with an ``unbilled_energy`` anomaly for
        whatever it delivers after. Returns the sessions so ended.
        """
        commands = self._commands
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
            connected = commands is None or commands.is_connected_here(u.charge_point_id)
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
            if commands is not None and commands.is_connected_here(u.charge_point_id):
                _log.warning("reconcile.stop_repeated", session_id=u.session_id)
                commands.post_stop_transaction(u.charge_point_id, u.transaction_ref)
        return ended

    async def _note_stop_requested(self, session_id: str, now: datetime) -> None:
        """Keep when the stop was first asked (a stop repeated on a stopping session)."""
        async with self._db.session() as unit:
            sessions = SqlSessions(unit)
            before = await sessions.get(session_id, lock=True)
            if before is None:
                return
            after, _ = rules.decide(before, StopRequested(rules.STOP_IGNORED, now))
            if after != before and after.status is before.status:
                await sessions.save(after)

    async def _end_ignored(self, session_id: str, asked_at: datetime, now: datetime) -> None:
        """End a session whose charge point ignored its stops; the rest is unbilled."""
        await self.decide(session_id, StopsIgnored(asked_at, now, self._settings.node_id))

    async def release_hold(self, session_id: str) -> None:
        """Release the hold of a session that has ended but whose hold is still open.

        Looks first (retrieve) and cancels only a hold still ``requires_capture``, with
        an idempotency key of its own; records what Stripe says. Safe to repeat; a
        Stripe outage leaves it for the reconciler's next pass.
        """
        log = _log.bind(session_id=session_id)
        session = await self._read(session_id)
        if session is None or session.payment.reference is None or not session.status.final:
            return
        reference = session.payment.reference
        if session.charged:  # charged, not held: the money goes back as a refund
            await self.refund_charge(session_id, reference, "the session ended; refunded")
            return
        try:
            state = await self._gateway.retrieve(reference)
            if state.status == HOLD_OPEN:
                state = await self._gateway.cancel(
                    reference, idempotency_key=rules.release_key(session)
                )
        except PaymentUnavailable as exc:
            log.warning("reconcile.release_deferred", error=exc.detail)
            return
        await self.decide(session_id, HoldReleased(state.status, self._now()))

    async def _read(self, session_id: str) -> Session | None:
        async with self._db.reader() as unit:
            return await SqlSessions(unit).get(session_id)

    async def _recover_hold(self, session_id: str) -> None:
        """A hold request whose outcome was never recorded: look, then release what is open.

        Claims the session first (``payment_status`` pending → unknown, so an accept
        still running never adopts it), finds the PaymentIntent made for the session
        (`find_hold`, by its metadata), cancels it if it is open, and ends the session
        failed with its allowance released. A Stripe outage leaves it for the next pass.
        """
        log = _log.bind(session_id=session_id)
        before, claimed = await self.decide(session_id, HoldClaimed(self._now()))
        if before is None or claimed is None:
            return
        if before.payment.reference is not None or not before.payment.status.in_doubt:
            return
        try:
            found = await self._gateway.find_hold(
                session_id, created_after=claimed.created_at - HOLD_LOOKBACK
            )
            decision = resolve_hold(
                found.status if found else None, may_adopt=False, charged=claimed.charged
            )
            state = found
            if found is not None and decision is HoldDecision.REFUND:
                # Charged at once: the money goes back through a recorded refund intent.
                await self.refund_charge(
                    session_id, found.reference, "the charge's outcome was unknown; refunded"
                )
                return
            if found is not None and decision is HoldDecision.RELEASE:
                state = await self._gateway.cancel(
                    found.reference, idempotency_key=rules.void_key(claimed)
                )
        except PaymentUnavailable as exc:
            log.warning("reconcile.hold_unknown", error=exc.detail)
            return
        event = HoldRecovered(
            state.reference if state else None,
            state.status if state else None,
            decision,
            self._now(),
        )
        _, after = await self.decide(session_id, event)
        if after is not None:
            reference = after.payment.reference
            log.info("reconcile.hold_resolved", reference=reference, decision=decision)

    async def _repair(self, session_id: str) -> None:
        """Finish an interrupted settlement: look first, act only on an open hold."""
        log = _log.bind(session_id=session_id)
        session = await self._read(session_id)
        call = None if session is None else rules.payment_call(session)
        if call is None:
            return
        if isinstance(call, Refund):
            await self._repair_refund(session_id, call)
            return
        try:
            state = await self._gateway.retrieve(call.reference)
        except PaymentUnavailable as exc:
            await self.decide(session_id, SettlementDeferred(str(exc), self._now()))
            return
        action = "capture" if isinstance(call, Capture) else "cancel"
        log.info("reconcile.repair", payment_status=state.status, action=action)
        if state.status == HOLD_OPEN:
            await self._call(session_id, call)
        else:
            await self.decide(session_id, self._settled(state))

    async def _repair_refund(self, session_id: str, call: Refund) -> None:
        """Finish an intended refund: look for it first; only if none was made, make it
        (the same stored request and key)."""
        minor = call.amount.to_minor_units()
        found: RefundState | None = None
        if minor > 0:
            try:
                found = await self._gateway.find_refund(call.reference, session_id)
            except PaymentUnavailable as exc:
                await self.decide(session_id, SettlementDeferred(str(exc), self._now()))
                return
        _log.info(
            "reconcile.repair",
            session_id=session_id,
            action="refund",
            found=found.reference if found else None,
        )
        if minor > 0 and found is None:
            await self._call(session_id, call)
        else:
            await self.decide(session_id, self._refunded(found))
