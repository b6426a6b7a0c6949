"""A `charge` session's settlement is a refund of the unused part, exactly once: none
when nothing is unused, finished by the reconciler after a failure, recorded (not
repeated) when it landed before the crash."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import update

from station.errors import PaymentUnavailable
from station.payments.fake_gateway import FakeGateway
from station.services.gateway import RefundState
from station.store.db import Database
from station.store.payments import SessionRow
from tests.payments.test_settlement import Clock, new_session, service, stored


class FlakyRefunds(FakeGateway):
    """Fails the next `failures` refunds as if Stripe could not be reached."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def refund(
        self, reference: str, amount_minor: int, *, idempotency_key: str, metadata: dict[str, str]
    ) -> RefundState:
        if self.failures:
            self.failures -= 1
            self.calls["refund"] += 1
            raise PaymentUnavailable("connection reset")
        return await super().refund(
            reference, amount_minor, idempotency_key=idempotency_key, metadata=metadata
        )


async def charged_session(db: Database, gateway: FakeGateway, energy_wh: str) -> str:
    """A session paid on `charge`: 20.00 charged at once (tariff 0.45/kWh + 0.50)."""
    session_id = await new_session(db, gateway, energy_wh=energy_wh)
    async with db.session() as session:
        row = await session.get(SessionRow, session_id)
        assert row is not None and row.payment_reference is not None
        row.payment_intent, row.payment_status = "charge", "succeeded"
        reference = row.payment_reference
    state = gateway.intents[reference]
    gateway.intents[reference] = replace(state, status="succeeded", captured_minor=2000)
    return session_id


async def test_the_unused_part_of_a_charge_is_refunded_once(db: Database) -> None:
    gateway, clock = FakeGateway(), Clock()
    session_id = await charged_session(db, gateway, "10000")  # 4.50 + 0.50 = 5.00

    await service(db, gateway, clock).settle(session_id)
    await service(db, gateway, clock).settle(session_id)

    row, settlement = await stored(db, session_id)
    ((refund, owner),) = gateway.refunds[row.payment_reference or ""]
    assert (refund.amount_minor, owner) == (1500, session_id)
    assert (row.status, row.captured, row.refunded) == (
        "settled",
        Decimal("5.00"),
        Decimal("15.00"),
    )
    assert settlement is not None and settlement.action == "refund"
    assert (settlement.state, settlement.refund_reference) == ("done", refund.reference)
    assert settlement.idempotency_key == f"refund_{session_id}"


async def test_a_charge_fully_used_is_settled_without_a_refund_call(db: Database) -> None:
    gateway, clock = FakeGateway(), Clock()
    session_id = await charged_session(db, gateway, "100000")  # 45.50, capped at 20.00

    await service(db, gateway, clock).settle(session_id)

    row, settlement = await stored(db, session_id)
    assert gateway.calls["refund"] == 0 and gateway.calls["list_refunds"] == 0
    assert (row.status, row.captured, row.refunded) == ("settled", Decimal("20.00"), Decimal(0))
    assert settlement is not None and settlement.state == "done"


async def test_a_charge_nothing_was_delivered_for_is_refunded_in_full(db: Database) -> None:
    gateway, clock = FakeGateway(), Clock()
    session_id = await charged_session(db, gateway, "0")

    await service(db, gateway, clock).settle(session_id)

    row, _ = await stored(db, session_id)
    assert (row.status, row.captured, row.refunded) == ("cancelled", Decimal(0), Decimal("20.00"))


async def test_a_failed_refund_is_finished_by_the_reconciler_with_the_stored_request(
    db: Database,
) -> None:
    gateway, clock = FlakyRefunds(failures=1), Clock()
    session_id = await charged_session(db, gateway, "10000")
    settlement_service = service(db, gateway, clock)

    await settlement_service.settle(session_id)
    row, pending = await stored(db, session_id)
    assert pending is not None and (pending.state, pending.attempts) == ("pending", 1)
    clock.now += timedelta(minutes=5)
    await settlement_service.reconcile()

    row, done = await stored(db, session_id)
    assert gateway.calls["list_refunds"] == 1  # looked first
    assert [r.amount_minor for r, _ in gateway.refunds[row.payment_reference or ""]] == [1500]
    assert done is not None and done.state == "done" and row.refunded == Decimal("15.00")


async def test_a_refund_that_landed_before_a_crash_is_recorded_not_repeated(db: Database) -> None:
    gateway, clock = FakeGateway(), Clock()
    session_id = await charged_session(db, gateway, "10000")
    settlement_service = service(db, gateway, clock)
    # The intent is committed and Stripe refunded, but the outcome was never recorded.
    settlement_service._call = _lost  # type: ignore[method-assign]
    await settlement_service.settle(session_id)
    row, _ = await stored(db, session_id)
    await gateway.refund(
        row.payment_reference or "", 1500, idempotency_key="k", metadata={"session_id": session_id}
    )

    recovered = service(db, gateway, clock)
    await recovered.reconcile(startup=True)

    row, done = await stored(db, session_id)
    assert len(gateway.refunds[row.payment_reference or ""]) == 1
    assert done is not None and done.state == "done" and row.refunded == Decimal("15.00")


async def _lost(*_args: object) -> None:
    return None


async def test_a_retried_refund_is_the_stored_one_not_a_recomputed_one(db: Database) -> None:
    """The retry is built from the stored intent: a meter changed after it does not move it."""
    gateway, clock = FlakyRefunds(failures=1), Clock()
    session_id = await charged_session(db, gateway, "10000")
    settlement_service = service(db, gateway, clock)
    await settlement_service.settle(session_id)
    async with db.session() as session:
        await session.execute(
            update(SessionRow).where(SessionRow.session_id == session_id).values(energy_wh=0)
        )
    clock.now += timedelta(minutes=5)
    await settlement_service.reconcile()

    row, _ = await stored(db, session_id)
    assert [r.amount_minor for r, _ in gateway.refunds[row.payment_reference or ""]] == [1500]
