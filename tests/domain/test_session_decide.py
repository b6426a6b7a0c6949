"""The session's rules, one event at a time: readings, stops, settlement, payment outcomes."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from station.domain.decide import (
    CAP_REACHED,
    UNBILLED_ENERGY,
    decide,
    hold_request,
    payment_call,
)
from station.domain.money import Money
from station.domain.payment import HoldDecision
from station.domain.session import MppIntent, PaymentStatus, SessionStatus
from station.domain.session_actions import (
    Cancel,
    Capture,
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
    HoldUnknown,
    Metered,
    PaymentSettled,
    Refunded,
    SettlementDeferred,
    SettlementDue,
    StartTimedOut,
    StopRequested,
    StopsIgnored,
    Suspended,
    TransactionEnded,
    WentSilent,
)
from station.domain.settlement import SettlementAction, SettlementState
from tests.domain.session_builders import NODE, a_report, a_session, at

S = SessionStatus
EUR = "eur"


def _kinds(actions: list[object]) -> list[type]:
    return [type(a) for a in actions]


def test_the_first_reading_links_the_transaction_and_starts_charging() -> None:
    session = a_session()

    new, actions = decide(session, Metered(a_report("1000", 5), at(5)))

    assert new.status is S.CHARGING
    assert new.metering.transaction_ref == "tx_1" and new.metering.started_at is not None
    assert new.cost == Money(Decimal("0.90"), EUR)  # 1 kWh at 0.40 + the 0.50 fee
    assert _kinds(actions) == [PublishMeter, PublishStatus, PushCost]


def test_a_reading_of_another_transaction_or_charge_point_is_refused() -> None:
    session, _ = decide(a_session(), Metered(a_report("1000", 5), at(5)))

    for report in (a_report("2000", 6, ref="tx_2"), a_report("2000", 6, cp="CP2")):
        new, actions = decide(session, Metered(report, at(6)))

        assert new == session and actions == [Reject()]


def test_when_the_next_sample_would_pass_the_cap_the_charge_stops_now() -> None:
    session, _ = decide(a_session(cap="4.80"), Metered(a_report("9000", 50), at(50)))

    new, actions = decide(session, Metered(a_report("10000", 55), at(55)))

    assert new.status is S.STOPPING and new.stop_reason == CAP_REACHED
    assert new.stop_requested_at == at(55)
    assert StopCharging("CP1", "tx_1") in actions


def test_with_a_limit_the_next_sample_lands_on_the_cap() -> None:
    session, _ = decide(a_session(cap="4.80"), Metered(a_report("9000", 50), at(50)))

    new, actions = decide(session, Metered(a_report("10000", 55), at(55), can_limit=True))

    assert new.status is S.CHARGING
    (limit,) = [a for a in actions if isinstance(a, SetLimit)]
    assert limit.limit.limit_w < Decimal(11000)


def test_the_transaction_end_queues_the_settlement_and_records_energy_past_the_cap() -> None:
    session, _ = decide(a_session(cap="2.00"), Metered(a_report("1000", 5), at(5)))

    new, actions = decide(session, TransactionEnded(a_report("9000", 30, ended=True), at(30)))

    assert new.status is S.STOPPING and new.metering.stopped_at == at(30)
    assert new.metering.meter_stop_wh == Decimal(10000)
    assert new.cost == Money(Decimal("2.00"), EUR)
    assert RequestSettlement() in actions
    (anomaly,) = [a for a in actions if isinstance(a, RecordAnomaly)]
    assert anomaly.kind == UNBILLED_ENERGY and "past its cap" in anomaly.detail
    assert not any(isinstance(a, PushCost) for a in actions)


def test_a_reading_after_the_end_is_told_to_stop_and_more_energy_is_an_anomaly() -> None:
    settled = a_session(status=S.SETTLED)

    live, live_actions = decide(settled, Metered(a_report("10", 1), at(1)))
    ended, end_actions = decide(settled, TransactionEnded(a_report("10", 1, ended=True), at(1)))

    assert live == settled and ended == settled
    assert StopCharging("CP1", "tx_1", again=True) in live_actions
    assert any(isinstance(a, RecordAnomaly) for a in end_actions)


def test_a_stop_before_the_start_is_reported_waits_for_the_start() -> None:
    new, actions = decide(a_session(), StopRequested("agent_requested", at(1)))

    assert new.status is S.STOPPING and new.stop_reason == "agent_requested"
    assert new.settlement is None and new.stop_requested_at is None
    assert not any(isinstance(a, Settle | StopCharging) for a in actions)


def test_the_start_reported_after_a_stop_is_told_to_stop_and_billed() -> None:
    stopping, _ = decide(a_session(), StopRequested("agent_requested", at(1)))

    new, actions = decide(stopping, Metered(a_report("2000", 5), at(5)))

    assert new.status is S.STOPPING and new.cost == Money(Decimal("1.30"), EUR)
    assert StopCharging("CP1", "tx_1", again=True) in actions


def test_a_stop_before_the_hold_is_placed_settles_at_once() -> None:
    session = a_session(payment_status=PaymentStatus.PENDING, reference=None)

    new, actions = decide(session, StopRequested("agent_requested", at(1)))

    assert new.status is S.STOPPING
    assert actions == [PublishStatus(S.STOPPING), Settle("agent_requested")]


def test_a_stop_after_the_transaction_ended_settles_at_once() -> None:
    charging, _ = decide(a_session(), Metered(a_report("1000", 5), at(5)))
    ended, _ = decide(charging, TransactionEnded(a_report("1000", 6, ended=True), at(6)))

    _, actions = decide(ended, StopRequested("agent_requested", at(7)))

    assert actions == [Settle("agent_requested")]


def test_a_stop_of_a_running_transaction_asks_the_charge_point_and_a_second_asks_again() -> None:
    charging, _ = decide(a_session(), Metered(a_report("1000", 5), at(5)))

    stopping, first = decide(charging, StopRequested("agent_requested", at(6)))
    again, second = decide(stopping, Suspended(at(7)))

    assert first == [PublishStatus(S.STOPPING), StopCharging("CP1", "tx_1")]
    assert stopping.stop_requested_at == at(6)
    assert second == [StopCharging("CP1", "tx_1", again=True)]
    assert again.stop_reason == "agent_requested"


def test_a_suspension_stops_with_its_reason() -> None:
    new, _ = decide(a_session(), Suspended(at(1)))

    assert new.stop_reason == "agent_suspended"


def test_settlement_captures_the_cost_rounded_once() -> None:
    charging, _ = decide(a_session(), Metered(a_report("3333", 20), at(20)))
    ended, _ = decide(charging, TransactionEnded(a_report("3333", 20, ended=True), at(20)))

    new, actions = decide(ended, SettlementDue(at(21), NODE))

    assert new.settlement is not None
    assert new.settlement.action is SettlementAction.CAPTURE
    assert new.settlement.amount == Money(Decimal("1.83"), EUR)  # 1.3332 + 0.50 → 1.83
    assert Capture("pi_1", Money(Decimal("1.83"), EUR), "settle_ses_1") in actions
    assert payment_call(new) == Capture("pi_1", Money(Decimal("1.83"), EUR), "settle_ses_1")


def test_settlement_of_nothing_delivered_cancels_the_hold() -> None:
    new, actions = decide(a_session(), SettlementDue(at(1), NODE, reason="start_rejected"))

    assert new.settlement is not None and new.settlement.action is SettlementAction.CANCEL
    assert new.stop_reason == "start_rejected"
    assert Cancel("pi_1", "settle_ses_1") in actions


def test_settlement_of_a_charge_refunds_the_unused_part() -> None:
    session = a_session(intent=MppIntent.CHARGE, payment_status=PaymentStatus.SUCCEEDED)
    charging, _ = decide(session, Metered(a_report("5000", 20), at(20)))

    new, actions = decide(charging, SettlementDue(at(21), NODE))

    assert new.settlement is not None
    assert new.settlement.action is SettlementAction.REFUND
    assert new.settlement.amount == Money(Decimal("7.50"), EUR)  # 10.00 − 2.50
    assert any(isinstance(a, Refund) and a.idempotency_key == "refund_ses_1" for a in actions)


def test_a_second_settlement_writes_no_second_intent() -> None:
    intended, _ = decide(a_session(), SettlementDue(at(1), NODE))

    again, actions = decide(intended, SettlementDue(at(2), NODE))

    assert again == intended and actions == []


def test_while_the_hold_is_in_doubt_settlement_only_waits_stopping() -> None:
    session = a_session(payment_status=PaymentStatus.PENDING, reference=None)

    new, actions = decide(session, SettlementDue(at(1), NODE, reason="agent_requested"))

    assert new.status is S.STOPPING and new.settlement is None
    assert PublishStatus(S.STOPPING) in actions


def test_settlement_without_a_hold_fails_the_session_and_releases_the_allowance() -> None:
    session = a_session(payment_status=PaymentStatus.DECLINED, reference=None)

    new, actions = decide(session, SettlementDue(at(1), NODE))

    assert new.status is S.FAILED and new.detail == "no hold was placed"
    assert SettleAllowance(Decimal(0)) in actions


def test_the_capture_outcome_settles_the_session_and_closes_the_allowance() -> None:
    intended, _ = decide(a_session(status=S.CHARGING), SettlementDue(at(1), NODE))

    new, actions = decide(intended, PaymentSettled("pi_1", "succeeded", 183, at(2)))

    assert new.status is S.SETTLED and new.captured == Money(Decimal("1.83"), EUR)
    assert new.payment.status is PaymentStatus.SUCCEEDED
    assert new.settlement is not None and new.settlement.state is SettlementState.DONE
    assert SettleAllowance(Decimal("1.83")) in actions
    assert actions[-2:] == [PublishStatus(S.SETTLED), PublishSettled(S.SETTLED)]


def test_a_payment_ended_otherwise_fails_the_session() -> None:
    intended, _ = decide(a_session(status=S.CHARGING), SettlementDue(at(1), NODE))

    new, _ = decide(intended, PaymentSettled("pi_1", "requires_payment_method", 0, at(2)))

    assert new.status is S.FAILED and new.detail == "payment ended in requires_payment_method"


def test_a_deferred_settlement_counts_the_attempt_and_stays_pending() -> None:
    intended, _ = decide(a_session(), SettlementDue(at(1), NODE))

    new, _ = decide(intended, SettlementDeferred("timeout" * 100, at(2)))

    assert new.settlement is not None and new.settlement.attempts == 1
    assert new.settlement.last_error is not None and len(new.settlement.last_error) == 500
    assert not new.settlement.done


def test_a_refused_refund_is_left_pending_for_the_operator() -> None:
    session = a_session(intent=MppIntent.CHARGE, payment_status=PaymentStatus.SUCCEEDED)
    intended, _ = decide(session, SettlementDue(at(1), NODE))

    new, _ = decide(intended, Refunded("re_1", "failed", 1000, at(2)))

    assert new.status is S.STOPPING
    assert new.settlement is not None and new.settlement.last_error == "refund re_1 is failed"


def test_a_refund_records_captured_as_charged_minus_refunded() -> None:
    session = a_session(intent=MppIntent.CHARGE, payment_status=PaymentStatus.SUCCEEDED)
    intended, _ = decide(session, SettlementDue(at(1), NODE))

    new, _ = decide(intended, Refunded("re_1", "succeeded", 1000, at(2)))

    assert new.status is S.CANCELLED and new.captured == Money(Decimal("0.00"), EUR)
    assert new.payment.status is PaymentStatus.REFUNDED


def test_the_whole_charge_is_refunded_once() -> None:
    session = a_session(intent=MppIntent.CHARGE, payment_status=PaymentStatus.UNKNOWN)
    session = replace(session, payment=replace(session.payment, reference=None))

    new, actions = decide(session, ChargeRefundDue("pi_9", "refunded", at(1), NODE))
    again, more = decide(new, ChargeRefundDue("pi_9", "refunded", at(2), NODE))

    assert new.payment.reference == "pi_9" and new.payment.status is PaymentStatus.SUCCEEDED
    assert new.settlement is not None and new.settlement.amount == session.cap
    assert any(isinstance(a, Refund) for a in actions)
    assert again == new and more == []


def test_a_hold_placed_is_recorded_and_announced() -> None:
    session = a_session(payment_status=PaymentStatus.PENDING, reference=None)

    new, actions = decide(session, HoldPlaced("pi_1", "requires_capture", 1000, at(1)))

    assert new.payment.reference == "pi_1"
    assert new.payment.status is PaymentStatus.REQUIRES_CAPTURE
    assert actions[-1] == PublishStatus(S.AUTHORIZED)


def test_a_hold_placed_after_a_stop_is_released_and_nothing_starts() -> None:
    session = a_session(payment_status=PaymentStatus.PENDING, reference=None)
    stopped, _ = decide(session, Suspended(at(1)))

    new, actions = decide(stopped, HoldPlaced("pi_1", "requires_capture", 1000, at(2)))

    assert new.payment.reference == "pi_1"
    assert ReleaseStopped(S.STOPPING, "agent_suspended") in actions


def test_a_hold_placed_after_the_reconciler_claimed_it_is_released_never_adopted() -> None:
    session = a_session(payment_status=PaymentStatus.PENDING, reference=None)
    claimed, _ = decide(session, HoldClaimed(at(1)))
    charge = replace(claimed, payment=replace(claimed.payment, intent=MppIntent.CHARGE))

    new, actions = decide(claimed, HoldPlaced("pi_1", "requires_capture", 1000, at(2)))
    _, charge_actions = decide(charge, HoldPlaced("pi_1", "succeeded", 1000, at(2)))

    assert new == claimed and new.payment.status is PaymentStatus.UNKNOWN
    assert Cancel("pi_1", "hold_ch_1_void") in actions
    assert any(isinstance(a, RefundCharge) for a in charge_actions)


def test_a_refused_hold_fails_the_session_through_the_state_machine() -> None:
    session = a_session(payment_status=PaymentStatus.PENDING, reference=None)
    settled = a_session(status=S.SETTLED)

    new, actions = decide(session, HoldFailed("payment_declined", "card declined", at(1)))
    still, _ = decide(settled, HoldFailed("payment_declined", "card declined", at(1)))

    assert new.status is S.FAILED and new.payment.status is PaymentStatus.DECLINED
    assert SettleAllowance(Decimal(0)) in actions
    assert still.status is S.SETTLED  # a terminal session never moves


def test_an_unknown_hold_is_handed_to_the_reconciler_then_resolved_by_looking() -> None:
    session = a_session(payment_status=PaymentStatus.PENDING, reference=None)

    unknown, _ = decide(session, HoldUnknown("payment_unavailable", "timeout", at(1)))
    found, _ = decide(unknown, HoldRecovered("pi_1", "canceled", HoldDecision.RELEASE, at(2)))
    none, _ = decide(unknown, HoldRecovered(None, None, HoldDecision.NO_HOLD, at(2)))

    assert unknown.status is S.AUTHORIZED and unknown.payment.status is PaymentStatus.UNKNOWN
    assert found.status is S.FAILED and found.payment.reference == "pi_1"
    assert none.status is S.FAILED and none.payment.status is PaymentStatus.NONE


def test_a_start_timeout_settles_only_a_session_that_never_started() -> None:
    charging, _ = decide(a_session(), Metered(a_report("100", 1), at(1)))
    stopped_early, _ = decide(a_session(), StopRequested("agent_requested", at(1)))

    started, actions = decide(charging, StartTimedOut(at(10), NODE))
    never, _ = decide(a_session(), StartTimedOut(at(10), NODE))
    awaited, _ = decide(stopped_early, StartTimedOut(at(10), NODE))

    assert started == charging and actions == []
    assert never.stop_reason == "start_timeout" and never.settlement is not None
    assert awaited.settlement is not None
    assert awaited.settlement.action is SettlementAction.CANCEL


def test_a_silence_settles_unless_the_session_was_heard_of_since() -> None:
    charging, _ = decide(a_session(), Metered(a_report("100", 1), at(1)))

    heard, _ = decide(charging, WentSilent(at(1), at(20), NODE))
    silent, _ = decide(charging, WentSilent(at(2), at(20), NODE))

    assert heard == charging
    assert silent.stop_reason == "charge_point_silent" and silent.settlement is not None


def test_stops_ignored_end_the_session_with_an_unbilled_energy_anomaly() -> None:
    charging, _ = decide(a_session(), Metered(a_report("100", 1), at(1)))
    stopping, _ = decide(charging, StopRequested("agent_requested", at(2)))

    new, actions = decide(stopping, StopsIgnored(at(2), at(30), NODE))

    assert new.settlement is not None
    assert any(isinstance(a, RecordAnomaly) and "ignored stops" in a.detail for a in actions)


def test_the_hold_request_is_built_from_the_session_alone() -> None:
    request = hold_request(a_session(intent=MppIntent.CHARGE))

    assert request.amount_minor == 1000 and request.idempotency_key == "hold_ch_1"
    assert (request.source_kind, request.source_value) == ("payment_method", "pm_card_visa")
    assert request.capture_method == "automatic"
