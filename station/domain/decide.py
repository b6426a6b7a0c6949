"""The session's rules: `decide(session, event) -> (session, actions)`.

Pure: the new session is a new value, the actions are what the services must
do (after saving it). A terminal session never moves again: an event for it
changes nothing, or only records what is owed (a stop after the end, energy
reported after it was settled). The rules, by event:

- **a reading** (`Metered`, `TransactionEnded`): links the transaction (one
  per session), takes its metering, prices it once (`decide_cap`: continue,
  lower the limit, or stop before the next sample passes the cap), tells the
  charge point the running cost, and at the end queues the settlement and
  records energy past the cap as ``unbilled_energy``;
- **a stop** (`StopRequested`, `Suspended`): stopping, with its reason; the
  charge point is told, or, with no transaction running, the session settles;
- **settlement** (`SettlementDue`, `StartTimedOut`, `WentSilent`,
  `StopsIgnored`): the intent — capture min(cost, cap), cancel when nothing
  was delivered, or refund a charge's unused part — once, with its amount;
  while the hold's outcome is in doubt the session only waits, stopping;
- **payment outcomes** (`Hold*`, `PaymentSettled`, `Refunded`,
  `SettlementDeferred`): the payment state, the terminal status, the
  allowance closed at what was captured.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import assert_never

from station.domain.cap import CapAction, ChargingLimit, decide_cap, past_the_cap
from station.domain.money import Money
from station.domain.session import (
    Metering,
    Payment,
    PaymentStatus,
    Session,
    SessionStatus,
    advance,
)
from station.domain.session_actions import (
    Audit,
    Cancel,
    Capture,
    Log,
    PlaceHold,
    PublishMeter,
    PublishSettled,
    PublishStatus,
    PushCost,
    RecordAnomaly,
    Refund,
    RefundCharge,
    Reject,
    ReleaseStopped,
    RequestSettlement,
    SessionAction,
    SetLimit,
    Settle,
    SettleAllowance,
    StopCharging,
)
from station.domain.session_events import (
    ChargeRefundDue,
    HoldClaimed,
    HoldFailed,
    HoldPlaced,
    HoldRecovered,
    HoldReleased,
    HoldUnknown,
    Metered,
    PaymentSettled,
    Refunded,
    SessionEvent,
    SettlementDeferred,
    SettlementDue,
    StartTimedOut,
    StopRequested,
    StopsIgnored,
    Suspended,
    TransactionEnded,
    TransactionReport,
    WentSilent,
)
from station.domain.settlement import (
    Settlement,
    SettlementAction,
    SettlementState,
    final_amount,
    intended,
    refund_key,
    settle_key,
)

Decision = tuple[Session, list[SessionAction]]

CAP_REACHED = "cap_reached"  # the stop reason of a session stopped at its cap
AGENT_SUSPENDED = "agent_suspended"  # … of one stopped by the kill switch
START_TIMEOUT = "start_timeout"
CHARGE_POINT_SILENT = "charge_point_silent"  # … of a silence settlement
STOP_IGNORED = "stop_ignored"  # … of a session the station ended itself
UNBILLED_ENERGY = "unbilled_energy"  # the anomaly of energy delivered and not billed
DEFAULT_INTERVAL_S = Decimal(60)
MAX_ERROR = 500  # characters of a Stripe error kept on the settlement


def decide(session: Session, event: SessionEvent) -> Decision:
    """The session after `event` and what the services must do (see the module text)."""
    match event:
        case Metered() | TransactionEnded():
            return _reading(session, event)
        case StopRequested(reason=reason, at=at):
            return _stop(session, reason, at)
        case Suspended(at=at):
            return _stop(session, AGENT_SUSPENDED, at)
        case SettlementDue(at=at, node_id=node, reason=reason):
            return _settle(session, reason, at, node)
        case StartTimedOut(at=at, node_id=node):
            if not session.never_started:
                return session, []
            return _settle(session, START_TIMEOUT, at, node)
        case WentSilent(quiet_since=quiet_since, at=at, node_id=node):
            if session.updated_at >= quiet_since:
                return session, []  # heard of since the reconciler looked
            return _settle(session, CHARGE_POINT_SILENT, at, node)
        case StopsIgnored():
            return _stops_ignored(session, event)
        case ChargeRefundDue():
            return _refund_charge(session, event)
        case HoldPlaced():
            return _hold_placed(session, event)
        case HoldFailed(code=code, detail=detail, at=at):
            return _hold_failed(session, code, detail, at)
        case HoldUnknown(code=code, detail=detail, at=at):
            return _hold_unknown(session, code, detail, at)
        case HoldClaimed():
            if session.payment.reference is not None or not session.payment.status.in_doubt:
                return session, []
            return _pay(session, status=PaymentStatus.UNKNOWN), []
        case HoldRecovered():
            return _hold_recovered(session, event)
        case HoldReleased(status=status, at=at):
            return _hold_released(session, status, at)
        case PaymentSettled():
            return _payment_settled(session, event)
        case Refunded():
            return _refunded(session, event)
        case SettlementDeferred(error=error):
            return _deferred(session, error)
        case _:
            assert_never(event)


# -- opening -----------------------------------------------------------------------------


def hold_request(session: Session) -> PlaceHold:
    """The hold request of a session, from the session alone: the same on every try."""
    kind, _, value = (session.payment.source or ":").partition(":")
    return PlaceHold(
        amount_minor=session.cap.to_minor_units(),
        currency=session.currency,
        source_kind=kind,
        source_value=value,
        idempotency_key=f"hold_{session.challenge_id}",
        metadata={
            "session_id": session.session_id,
            "offer_id": session.offer_id,
            "agent_id": session.agent_id,
        },
        capture_method="automatic" if session.charged else "manual",
    )


def void_key(session: Session) -> str:
    """The idempotency key of releasing a session's unused hold (a cancel has no body)."""
    return f"hold_{session.challenge_id}_void"


def release_key(session: Session) -> str:
    """The key of releasing the hold of a session that ended with it open."""
    return f"release_{session.session_id}"


# -- readings ----------------------------------------------------------------------------


def _reading(session: Session, event: Metered | TransactionEnded) -> Decision:
    tx, now = event.transaction, event.at
    ended = isinstance(event, TransactionEnded)
    if tx.charge_point_id != session.charge_point_id:
        return session, [Reject()]
    if session.metering.transaction_ref not in (None, tx.transaction_ref):
        return session, [Reject()]  # one transaction per session
    if session.status.final:
        return session, _after_the_end(session, tx, ended)
    status = session.status
    actions: list[SessionAction] = []
    # A stopping session still reporting a live transaction has not stopped: the stop is
    # sent again with every such reading.
    stop = status is SessionStatus.STOPPING and not ended
    interval = _interval(session.metering.last_reading_at, tx.last_reading_at)
    metering = _metered(session.metering, tx, now, ended)
    stop_reason = session.stop_reason
    if ended:
        stop_reason = stop_reason or tx.stop_reason
    if status is SessionStatus.AUTHORIZED:
        status = advance(status, SessionStatus.CHARGING)
    tariff, cap = session.tariff, session.cap
    usage = metering.usage(now)
    # The one decision of a reading (and its one cost computation): continue, lower the
    # limit, or stop now — in every non-terminal state, so a stopping session still
    # delivering near its cap is held and told to stop again.
    decision = decide_cap(
        status, tariff, cap, usage, tx.power_w, interval,
        can_limit=isinstance(event, Metered) and event.can_limit,
    )  # fmt: skip
    total = decision.cost.min(cap.rounded())
    stop_requested_at = session.stop_requested_at
    limit: ChargingLimit | None = None
    settle = False
    anomaly: RecordAnomaly | None = None
    if ended:
        status = advance(status, SessionStatus.STOPPING)
        settle = True
        past = past_the_cap(tariff, usage, cap)
        if past is not None:
            anomaly = RecordAnomaly(
                UNBILLED_ENERGY,
                f"session {session.session_id} delivered {past.energy_wh} Wh past its cap of"
                f" {cap.to_wire()} {cap.currency}: {past.amount.to_wire()} {cap.currency}"
                " not billed",
                tx.transaction_id,
                tx.stopped_at or tx.last_reading_at,
            )
            actions.append(
                Log("session.unbilled_energy", "warning", {
                    "unbilled_wh": past.energy_wh, "unbilled": past.amount.to_wire(),
                    "on": "past_the_cap",
                })
            )  # fmt: skip
    elif decision.action is CapAction.STOP:
        if status is not SessionStatus.STOPPING:
            status = advance(status, SessionStatus.STOPPING)
            stop_reason = CAP_REACHED
        stop_requested_at = stop_requested_at or now
        stop = True
    elif decision.action is CapAction.LIMIT:
        assert decision.limit_w is not None and decision.duration_s is not None
        limit = ChargingLimit(
            tx.evse_id, decision.limit_w, tx.last_reading_at or now, decision.duration_s
        )
    new = replace(
        session,
        status=status,
        metering=metering,
        cost=total,
        stop_reason=stop_reason,
        stop_requested_at=stop_requested_at,
        updated_at=now,
    )
    if anomaly is not None:
        actions.append(anomaly)
    actions.append(
        PublishMeter(
            metering.energy_wh, tx.power_w, total, cap, tx.last_reading_at or tx.started_at
        )
    )
    if status is not session.status:
        actions.append(PublishStatus(status))
    if not ended:
        ref = tx.transaction_ref
        actions.append(PushCost(session.charge_point_id, ref, total))
        if stop:
            actions.append(
                StopCharging(session.charge_point_id, ref, again=stop_requested_at != now)
            )
        elif limit is not None:
            actions.append(SetLimit(session.charge_point_id, ref, limit))
    if settle:
        actions.append(RequestSettlement())
    return new, actions


def _after_the_end(session: Session, tx: TransactionReport, ended: bool) -> list[SessionAction]:
    """A reading for a session that is over: energy past what was billed is an anomaly; a
    live transaction is told to stop again (the station owns the stop)."""
    actions: list[SessionAction] = []
    billed = session.metering.energy_wh
    if ended and tx.energy_wh > billed:
        actions.append(
            RecordAnomaly(
                UNBILLED_ENERGY,
                f"session {session.session_id} was {session.status}"
                f" ({session.stop_reason or 'no reason'}) for {billed} Wh; the charge point"
                f" then reported {tx.energy_wh} Wh ({tx.energy_wh - billed} Wh not billed)",
                tx.transaction_id,
                tx.stopped_at or tx.last_reading_at,
            )
        )
        actions.append(
            Log("session.unbilled_energy", "warning",
                {"billed_wh": billed, "reported_wh": tx.energy_wh})
        )  # fmt: skip
    if not ended:
        actions.append(StopCharging(session.charge_point_id, tx.transaction_ref, again=True))
    actions.append(Reject())
    return actions


def _metered(m: Metering, tx: TransactionReport, now: datetime, ended: bool) -> Metering:
    linked = m.transaction_ref is None
    energy = max(tx.energy_wh, Decimal(0))
    meter_start = m.meter_start_wh
    if meter_start is None and tx.meter_start_wh is not None:
        meter_start = tx.meter_start_wh
    new = replace(
        m,
        transaction_ref=tx.transaction_ref if linked else m.transaction_ref,
        transaction_id=tx.transaction_id if linked else m.transaction_id,
        started_at=tx.started_at if linked else m.started_at,
        meter_start_wh=meter_start,
        last_active_at=(tx.last_reading_at or now) if tx.energy_wh > m.energy_wh
        else m.last_active_at,
        energy_wh=energy,
        last_reading_at=tx.last_reading_at or m.last_reading_at,
    )  # fmt: skip
    if ended:
        new = replace(
            new,
            stopped_at=tx.stopped_at or tx.last_reading_at or now,
            meter_stop_wh=meter_start + energy if meter_start is not None else m.meter_stop_wh,
        )
    return new


def _interval(previous: datetime | None, latest: datetime | None) -> Decimal:
    """The meter interval: the time between the last two readings, else a minute."""
    if previous is not None and latest is not None:
        seconds = Decimal(str((latest - previous).total_seconds()))
        if seconds > 0:
            return seconds
    return DEFAULT_INTERVAL_S


# -- stops -------------------------------------------------------------------------------


def _stop(session: Session, reason: str, now: datetime) -> Decision:
    """Stopping; the charge point told — or, its start not reported yet, the start awaited
    (told to stop when it comes; the start timeout releases the hold if it never does);
    settled at once when the transaction ended, or no hold was placed yet (the hold
    request, or the reconciler looking for its outcome, ends it)."""
    if session.status.final:
        return session, []
    moved = session.status is not SessionStatus.STOPPING
    new = session
    if moved:
        new = replace(
            new,
            status=advance(session.status, SessionStatus.STOPPING),
            stop_reason=session.stop_reason or reason,
            updated_at=now,
        )
    ref = session.metering.transaction_ref
    settle_now = session.metering.stopped_at is not None or session.payment.reference is None
    actions: list[SessionAction] = [PublishStatus(SessionStatus.STOPPING)] if moved else []
    if settle_now:
        actions.append(Settle(reason))
        return new, actions
    if ref is None:
        actions.append(Log("session.stop_awaits_start"))
        return new, actions
    # The stop timer runs from the stop, or from the start reported after it.
    if new.stop_requested_at is None:
        new = replace(new, stop_requested_at=now)
    actions.append(StopCharging(session.charge_point_id, ref, again=not moved))
    return new, actions


# -- settlement --------------------------------------------------------------------------


def _settle(session: Session, reason: str | None, now: datetime, node_id: str) -> Decision:
    """The settlement intent, once: or, while the hold is in doubt, only stopping."""
    if session.status.final or session.settlement is not None:
        return session, []  # settled, or someone else's settlement is in flight or done
    moved = session.status is not SessionStatus.STOPPING
    stop_reason = session.stop_reason if session.stop_reason or not reason else reason
    payment = session.payment
    if payment.reference is None and payment.status.in_doubt:
        # Whoever placed the hold finishes (it sees the session stopping and releases the
        # hold), or the reconciler resolves it by looking.
        new = replace(
            session,
            status=advance(session.status, SessionStatus.STOPPING),
            stop_reason=stop_reason,
            updated_at=now,
        )
        actions: list[SessionAction] = [Log("settlement.hold_pending")]
        return new, actions + ([PublishStatus(SessionStatus.STOPPING)] if moved else [])
    if payment.reference is None:
        new = replace(
            session,
            status=advance(session.status, SessionStatus.FAILED),
            detail="no hold was placed",
            updated_at=now,
        )
        return new, [SettleAllowance(Decimal(0)), PublishStatus(SessionStatus.FAILED)]
    delivered = session.metering.energy_wh > 0
    cost = session.cost_at(now).total
    final = final_amount(session.cap, cost, delivered=delivered)
    action, amount = intended(session.cap, final, charged=session.charged)
    key = refund_key(session.session_id) if session.charged else settle_key(session.session_id)
    settlement = Settlement(action, amount, payment.reference, key, node_id, now)
    new = replace(
        session,
        status=advance(session.status, SessionStatus.STOPPING),
        stop_reason=stop_reason,
        cost=cost if delivered else cost * 0,
        settlement=settlement,
        updated_at=now,
    )
    actions = [
        Audit(
            f"settlement.{action}_intended",
            {"amount": str(amount.amount), "reference": payment.reference},
        ),
        Log("settlement.intended", fields={"action": action.value, "amount": amount.amount}),
    ]
    if moved:
        actions.append(PublishStatus(SessionStatus.STOPPING))
    actions.append(_payment_call(new.session_id, settlement))
    return new, actions


def _payment_call(session_id: str, settlement: Settlement) -> Capture | Cancel | Refund:
    """The Stripe call a settlement intent stands for, built from it alone."""
    ref, key = settlement.payment_reference, settlement.idempotency_key
    match settlement.action:
        case SettlementAction.CAPTURE:
            return Capture(ref, settlement.amount, key)
        case SettlementAction.CANCEL:
            return Cancel(ref, key)
        case SettlementAction.REFUND:
            return Refund(ref, settlement.amount, key, {"session_id": session_id})
        case _:
            assert_never(settlement.action)


def payment_call(session: Session) -> Capture | Cancel | Refund | None:
    """The Stripe call of the session's pending settlement (to repeat it as it was)."""
    s = session.settlement
    if s is None or s.done:
        return None
    return _payment_call(session.session_id, s)


def _stops_ignored(session: Session, event: StopsIgnored) -> Decision:
    """The charge point ignored its stops: the station ends the session (settled for what
    was metered); the energy delivered after is recorded as not billed."""
    if session.status is not SessionStatus.STOPPING or session.metering.stopped_at is not None:
        return session, []
    energy = session.metering.energy_wh
    new, actions = _settle(session, STOP_IGNORED, event.at, event.node_id)
    anomaly = RecordAnomaly(
        UNBILLED_ENERGY,
        f"session {session.session_id}: the charge point ignored stops from"
        f" {event.asked_at.isoformat()}; the station ended it at {energy} Wh"
        " (at most the cap is captured); energy delivered after is not billed",
        session.metering.transaction_id,
        event.at,
    )
    warn = Log("reconcile.stop_ignored", "warning", {"energy_wh": energy})
    return new, [warn, anomaly, *actions]


def _refund_charge(session: Session, event: ChargeRefundDue) -> Decision:
    """Refund a whole charge, exactly once: the intent, then the call built from it."""
    if session.settlement is not None:
        return session, []  # a settlement is in flight or done: it owns the money
    reference = session.payment.reference or event.reference
    settlement = Settlement(
        SettlementAction.REFUND,
        session.cap,
        reference,
        refund_key(session.session_id),
        event.node_id,
        event.at,
    )
    new = replace(
        _pay(session, reference=reference, status=PaymentStatus.SUCCEEDED),
        detail=event.detail,
        settlement=settlement,
        updated_at=event.at,
    )
    audit = Audit(
        "settlement.refund_intended", {"amount": str(session.cap.amount), "reference": reference}
    )
    return new, [audit, _payment_call(session.session_id, settlement)]


def _payment_settled(session: Session, event: PaymentSettled) -> Decision:
    """The capture or cancel is done: settled (what Stripe captured), cancelled, or
    failed (the PaymentIntent ended otherwise)."""
    s = session.settlement
    if s is None or s.done:
        return session, []
    detail = session.detail
    captured = Money.from_minor_units(event.captured_minor, session.currency)
    if event.status == PaymentStatus.SUCCEEDED:
        target = SessionStatus.SETTLED
    elif event.status == PaymentStatus.CANCELED:
        target, captured = SessionStatus.CANCELLED, session.cap * 0
    else:
        target, captured = SessionStatus.FAILED, session.cap * 0
        detail = f"payment ended in {event.status}"
    status = _to(session.status, target)
    new = replace(
        _pay(session, status=PaymentStatus(event.status)),
        status=status,
        captured=captured,
        detail=detail,
        settlement=replace(s, state=SettlementState.DONE, completed_at=event.at),
        updated_at=event.at,
    )
    audit = Audit(
        "settlement.captured" if target is SessionStatus.SETTLED else "settlement.cancelled",
        {"captured": str(captured.amount), "reference": event.reference, "status": event.status},
    )
    return new, [SettleAllowance(captured.amount), audit, *_settled(new, captured=captured.amount)]


def _refunded(session: Session, event: Refunded) -> Decision:
    """A charge session's refund is recorded: captured = charged − refunded."""
    s = session.settlement
    if s is None or s.done:
        return session, []
    if event.reference is not None and event.status not in ("succeeded", "pending"):
        # Stripe refused the money back: left pending for the operator.
        new = replace(
            session,
            settlement=replace(
                s,
                attempts=s.attempts + 1,
                last_error=f"refund {event.reference} is {event.status}",
            ),
        )
        return new, [Log("settlement.refund_failed", "error", {"status": event.status})]
    charged = session.cap
    back = Money.from_minor_units(event.amount_minor if event.reference else 0, session.currency)
    captured = charged - back
    target = SessionStatus.SETTLED if captured.amount > 0 else SessionStatus.CANCELLED
    status = session.status if session.status.final else advance(session.status, target)
    new = replace(
        _pay(
            session,
            status=PaymentStatus.REFUNDED if event.reference else PaymentStatus.SUCCEEDED,
        ),
        status=status,
        refunded=back,
        captured=captured,
        settlement=replace(
            s,
            state=SettlementState.DONE,
            completed_at=event.at,
            refund_reference=event.reference,
        ),
        updated_at=event.at,
    )
    audit = Audit(
        "settlement.refunded",
        {
            "charged": str(charged.amount),
            "refunded": str(back.amount),
            "reference": session.payment.reference,
            "refund": event.reference,
        },
    )
    return new, [SettleAllowance(captured.amount), audit, *_settled(new, refunded=back.amount)]


def _settled(session: Session, **fields: Decimal) -> list[SessionAction]:
    """The one tail of every settlement: the log line, the status, the final event."""
    return [
        Log("session.settled", fields={"status": session.status.value, **fields}),
        PublishStatus(session.status),
        PublishSettled(session.status),
    ]


def _deferred(session: Session, error: str) -> Decision:
    s = session.settlement
    if s is None or s.done:
        return session, []
    new = replace(
        session, settlement=replace(s, attempts=s.attempts + 1, last_error=error[:MAX_ERROR])
    )
    return new, [Log("settlement.deferred", "warning", {"error": error})]


# -- holds -------------------------------------------------------------------------------


def _hold_placed(session: Session, event: HoldPlaced) -> Decision:
    """Record the hold: unless the reconciler took it over meanwhile (then it is released,
    never adopted) — and if the session was stopped meanwhile, nothing starts."""
    audit = Audit(
        "payment.hold_placed",
        {
            "reference": event.reference,
            "amount_minor": event.amount_minor,
            "session_status": session.status.value,
        },
    )
    payment = session.payment
    claimed = payment.reference is None and payment.status is not PaymentStatus.PENDING
    if claimed:
        release: SessionAction
        if session.charged:
            release = RefundCharge(
                event.reference, "the charge came after it was given up; refunded"
            )
        else:
            release = Cancel(event.reference, void_key(session))
        return session, [audit, release]
    new = _pay(session, reference=event.reference, status=PaymentStatus(event.status))
    if session.status is not SessionStatus.AUTHORIZED:
        return new, [audit, ReleaseStopped(session.status, session.stop_reason)]
    return new, [audit, PublishStatus(SessionStatus.AUTHORIZED)]


def _hold_failed(session: Session, code: str, detail: str, now: datetime) -> Decision:
    new = replace(
        _pay(session, status=PaymentStatus.DECLINED),
        status=_to(session.status, SessionStatus.FAILED),
        detail=f"{code}: {detail}",
        updated_at=now,
    )
    audit = Audit("payment.hold_refused", {"code": code, "detail": detail})
    return new, [SettleAllowance(Decimal(0)), audit, PublishStatus(new.status)]


def _hold_unknown(session: Session, code: str, detail: str, now: datetime) -> Decision:
    if session.payment.reference is not None:
        return session, []
    new = replace(
        _pay(session, status=PaymentStatus.UNKNOWN)
        if session.payment.status is PaymentStatus.PENDING
        else session,
        detail=f"{code}: {detail}; the hold's outcome is being resolved",
        updated_at=now,
    )
    return new, [Audit("payment.hold_unknown", {"code": code, "detail": detail})]


def _hold_recovered(session: Session, event: HoldRecovered) -> Decision:
    if session.payment.reference is not None:
        return session, []
    if event.reference is not None and event.status is not None:
        new = _pay(session, reference=event.reference, status=PaymentStatus(event.status))
        detail = "the hold's outcome was unknown; it was released"
    else:
        new = _pay(session, status=PaymentStatus.NONE)
        detail = "the hold's outcome was unknown; Stripe made none"
    moved = not session.status.final
    new = replace(
        new, status=_to(session.status, SessionStatus.FAILED), detail=detail, updated_at=event.at
    )
    audit = Audit(
        "payment.hold_recovered",
        {
            "reference": new.payment.reference,
            "status": new.payment.status.value,
            "decision": event.decision.value,
        },
    )
    actions: list[SessionAction] = [SettleAllowance(Decimal(0)), audit]
    return new, actions + ([PublishStatus(SessionStatus.FAILED)] if moved else [])


def _hold_released(session: Session, status: str, now: datetime) -> Decision:
    if session.payment.status is not PaymentStatus.REQUIRES_CAPTURE:
        return session, []
    new = replace(
        _pay(session, status=PaymentStatus(status)),
        detail="the session ended before its hold was placed; the hold was released",
        updated_at=now,
    )
    reference = session.payment.reference
    audit = Audit("payment.hold_released", {"reference": reference, "status": status})
    log = Log("settlement.hold_released", fields={"reference": reference, "payment_status": status})
    return new, [audit, log]


# -- helpers -----------------------------------------------------------------------------


def _to(current: SessionStatus, target: SessionStatus) -> SessionStatus:
    """`target`, unless the session is terminal already (it never moves again)."""
    return current if current.final else advance(current, target)


def _pay(session: Session, *, status: PaymentStatus, reference: str | None = None) -> Session:
    payment: Payment = replace(
        session.payment, status=status, reference=reference or session.payment.reference
    )
    return replace(session, payment=payment)
