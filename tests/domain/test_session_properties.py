"""Properties of the session's rules over random event sequences (hypothesis).

Whatever happens — readings, stops, suspensions, silences, Stripe timeouts,
holds refused or of unknown outcome, events repeated or late — a session:

- never captures more than its cap;
- captures the cost of its metered energy rounded once, or the cap;
- writes exactly one settlement intent, and every Stripe call repeats it;
- never moves out of a terminal state;
- reaches a terminal state once its payment outcomes are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from station.domain.decide import decide, payment_call
from station.domain.money import Money
from station.domain.payment import HoldDecision
from station.domain.session import MppIntent, PaymentStatus, Session
from station.domain.session_actions import (
    Cancel,
    Capture,
    Refund,
    RefundCharge,
    ReleaseStopped,
    SessionAction,
    Settle,
)
from station.domain.session_events import (
    ChargeRefundDue,
    HoldClaimed,
    HoldFailed,
    HoldPlaced,
    HoldRecovered,
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
    WentSilent,
)
from tests.domain.session_builders import NODE, a_report, a_session, at

PRICE, FEE = Decimal("0.4000"), Decimal("0.50")  # session_builders.TARIFF

_MOVES = st.one_of(
    st.tuples(
        st.just("read"),
        st.integers(0, 4000),  # Wh since the last reading
        st.integers(1, 10),  # minutes since
        st.integers(0, 22000),  # power, W
        st.booleans(),  # the charge point takes a limit
    ),
    st.sampled_from(
        [
            ("end",),
            ("stop",),
            ("suspend",),
            ("settle",),
            ("silent",),
            ("ignored",),
            ("timeout",),
            ("retry",),
            ("read_other",),
        ]
    ),
)


@dataclass
class World:
    """One session driven through events; the services' part played by the test."""

    session: Session
    data: st.DataObject
    minutes: float = 0
    energy_wh: int = 0
    ended: bool = False
    calls: list[SessionAction] = field(default_factory=list)
    at_intent: Session | None = None

    def apply(self, event: SessionEvent) -> None:
        before = self.session
        after, actions = decide(before, event)
        _check_step(before, after)
        if before.settlement is None and after.settlement is not None:
            self.at_intent = after
        self.session = after
        for action in actions:
            self.act(action)

    def act(self, action: SessionAction) -> None:
        now = at(self.minutes)
        match action:
            case Capture() | Cancel() | Refund():
                self.calls.append(action)
                if self.data.draw(st.booleans(), label="stripe answers"):
                    self.apply(_answer(action, now))
                else:
                    self.apply(SettlementDeferred("timeout", now))
            case Settle(reason=reason):
                self.apply(SettlementDue(now, NODE, reason))
            case ReleaseStopped():
                self.apply(SettlementDue(now, NODE))
            case RefundCharge(reference=reference, detail=detail):
                self.apply(ChargeRefundDue(reference, detail, now, NODE))
            case _:
                pass  # OCPP commands, events, records: nothing comes back

    def move(self, move: tuple[object, ...]) -> None:
        now = at(self.minutes)
        match move:
            case ("read", int(wh), int(minutes), int(power), bool(can_limit)):
                if self.ended:
                    return
                self.minutes += minutes
                self.energy_wh += wh
                report = a_report(Decimal(self.energy_wh), self.minutes, power_w=str(power))
                self.apply(Metered(report, at(self.minutes), can_limit))
            case ("end",):
                self.ended = True
                report = a_report(Decimal(self.energy_wh), self.minutes, ended=True)
                self.apply(TransactionEnded(report, now))
            case ("stop",):
                self.apply(StopRequested("agent_requested", now))
            case ("suspend",):
                self.apply(Suspended(now))
            case ("settle",):
                self.apply(SettlementDue(now, NODE))
            case ("silent",):
                self.apply(WentSilent(now, now, NODE))
            case ("ignored",):
                self.apply(StopsIgnored(now, now, NODE))
            case ("timeout",):
                self.apply(StartTimedOut(now, NODE))
            case ("retry",):
                call = payment_call(self.session)
                if call is not None:
                    self.act(call)
            case ("read_other",):
                self.apply(Metered(a_report("99999", self.minutes, ref="tx_x"), now))

    def drain(self) -> None:
        """Everything answers from now on: the session must reach a terminal state."""
        for _ in range(20):
            s = self.session
            if s.status.final:
                return
            now = at(self.minutes)
            if s.payment.reference is None and s.payment.status.in_doubt:
                self.apply(HoldClaimed(now))
                self.apply(HoldRecovered(None, None, HoldDecision.NO_HOLD, now))
            elif s.settlement is not None:
                call = payment_call(s)
                assert call is not None
                self.calls.append(call)
                self.apply(_answer(call, now))
            else:
                self.apply(SettlementDue(now, NODE))


def _answer(call: SessionAction, now: object) -> SessionEvent:
    assert isinstance(now, type(at(0)))
    match call:
        case Capture(reference=ref, amount=amount):
            return PaymentSettled(ref, "succeeded", amount.to_minor_units(), now)
        case Cancel(reference=ref):
            return PaymentSettled(ref, "canceled", 0, now)
        case Refund(amount=amount):
            minor = amount.to_minor_units()
            return Refunded("re_1" if minor else None, "succeeded", minor, now)
    raise AssertionError(call)


_LATE: list[SessionEvent] = [
    HoldFailed("payment_declined", "late", at(99)),
    HoldUnknown("payment_unavailable", "late", at(99)),
    HoldRecovered(None, None, HoldDecision.NO_HOLD, at(99)),
    PaymentSettled("pi_1", "requires_payment_method", 0, at(99)),
    PaymentSettled("pi_1", "succeeded", 1, at(99)),
    Refunded("re_2", "succeeded", 1, at(99)),
    ChargeRefundDue("pi_1", "late", at(99), NODE),
    SettlementDue(at(99), NODE),
]


def _check_step(before: Session, after: Session) -> None:
    if before.status.final:  # no transition out of a terminal state
        assert after.status is before.status
    if before.captured is not None:  # captured once (a late charge refunded is recorded)
        assert after.captured == before.captured and after.refunded == before.refunded
    if before.settlement is not None:  # exactly one intent: it never changes
        assert after.settlement is not None
        b, a = before.settlement, after.settlement
        assert (a.action, a.amount, a.idempotency_key, a.payment_reference) == (
            b.action,
            b.amount,
            b.idempotency_key,
            b.payment_reference,
        )
    if after.captured is not None:
        assert after.captured <= after.cap


def _metered_cost(session: Session) -> Money:
    """The cost of the metered energy, rounded once, computed here from the tariff."""
    kwh = session.metering.energy_wh / 1000
    if kwh <= 0:
        return Money.zero(session.currency)
    raw = kwh * PRICE + FEE
    return Money(raw.quantize(Decimal("0.01"), ROUND_HALF_UP), session.currency)


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    cap=st.sampled_from(["1.00", "2.50", "10.00", "33.33"]),
    intent=st.sampled_from(MppIntent),
    hold=st.sampled_from(["placed", "declined", "unknown", "late"]),
    moves=st.lists(_MOVES, max_size=25),
)
def test_any_sequence_settles_once_within_the_cap(
    data: st.DataObject,
    cap: str,
    intent: MppIntent,
    hold: str,
    moves: list[tuple[object, ...]],
) -> None:
    session = a_session(
        cap=cap, intent=intent, payment_status=PaymentStatus.PENDING, reference=None
    )
    world = World(session, data)
    placed = "succeeded" if intent is MppIntent.CHARGE else "requires_capture"
    if hold == "placed":
        world.apply(HoldPlaced("pi_1", placed, world.session.cap.to_minor_units(), at(0)))
    elif hold == "declined":
        world.apply(HoldFailed("payment_declined", "declined", at(0)))
    elif hold == "unknown":
        world.apply(HoldUnknown("payment_unavailable", "timeout", at(0)))

    for move in moves:
        world.move(move)
        late = hold == "late" and world.session.payment.status is PaymentStatus.PENDING
        if late and data.draw(st.booleans(), label="hold answers now"):
            world.apply(HoldPlaced("pi_1", placed, world.session.cap.to_minor_units(), at(0)))
    world.drain()
    final, calls = world.session, list(world.calls)
    for late in [*moves, *_LATE]:  # late and repeated events: nothing moves any more
        world.move(late) if isinstance(late, tuple) else world.apply(late)
        assert world.session.status is final.status

    assert final.status.final
    keys = {(type(c), getattr(c, "idempotency_key", None)) for c in calls}
    assert len(keys) <= 1  # one settlement intent, every call a repeat of it
    if final.captured is not None:
        assert final.captured <= final.cap
        assert world.at_intent is not None
        expected = _metered_cost(world.at_intent).min(final.cap)
        assert final.captured in (expected, final.cap)
        if final.charged:
            assert final.refunded == final.cap - final.captured
    if calls:
        assert final.settlement is not None and final.settlement.done
    if final.payment.reference is not None and not final.charged:
        # never a hold left open: settled through the intent, or released
        assert final.settlement is not None or final.payment.status is not (
            PaymentStatus.REQUIRES_CAPTURE
        )
