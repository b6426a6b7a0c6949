"""Settlement is exactly once: concurrent settles, failures and crashes never capture twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from station.domain.tariff import Tariff
from station.errors import PaymentUnavailable
from station.payments.fake_gateway import FakeGateway
from station.services.gateway import PaymentIntentState, PaymentSource
from station.services.session_events import SessionEvents
from station.services.settlement import SettlementService
from station.settings import Settings
from station.store.charging import ChargePointRow
from station.store.db import Database
from station.store.payments import SessionRow, SettlementRow

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TARIFF = Tariff("usd", Decimal("0.45"), session_fee=Decimal("0.50"))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FlakyGateway(FakeGateway):
    """Fails the next `failures` captures as if Stripe could not be reached."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def capture(
        self, reference: str, amount_minor: int, *, idempotency_key: str
    ) -> PaymentIntentState:
        if self.failures:
            self.failures -= 1
            self.calls["capture"] += 1
            raise PaymentUnavailable("connection reset")
        return await super().capture(reference, amount_minor, idempotency_key=idempotency_key)


async def new_session(
    db: Database,
    gateway: FakeGateway,
    *,
    energy_wh: str = "10000",
    started: bool = True,
    status: str = "stopping",
) -> str:
    hold = await gateway.authorize(
        amount_minor=2000,
        currency="usd",
        source=PaymentSource("payment_method", "pm_card_visa"),
        idempotency_key="h",
        metadata={},
    )
    session_id = f"ses_{hold.reference}"
    async with db.session() as session:
        session.add(
            SessionRow(
                session_id=session_id,
                agent_id="agt_1",
                negotiation_id="neg_1",
                offer_id="off_1",
                challenge_id=f"ch_{session_id}",
                charge_point_id="CP-1",
                evse_id=1,
                id_token=session_id[-20:],
                remote_start_id=1,
                tariff=TARIFF.to_wire(),
                cap=Decimal("20.00"),
                currency="usd",
                status=status,
                energy_wh=Decimal(energy_wh),
                cost=Decimal(0),
                transaction_ref="tx-1" if started else None,
                started_at=T0 if started else None,
                stopped_at=T0 + timedelta(minutes=20) if started else None,
                payment_reference=hold.reference,
                payment_status="requires_capture",
                created_at=T0,
                updated_at=T0,
            )
        )
    return session_id


def service(db: Database, gateway: FakeGateway, clock: Clock, **kw: object) -> SettlementService:
    settings = Settings(database_url=db.url, node_id="node-a", **kw)  # type: ignore[arg-type]
    return SettlementService(db, settings, gateway, SessionEvents(), clock)


async def stored(db: Database, session_id: str) -> tuple[SessionRow, SettlementRow | None]:
    async with db.reader() as session:
        row = await session.get(SessionRow, session_id)
        settlement = await session.get(SettlementRow, session_id)
        session.expunge_all()
    assert row is not None
    return row, settlement


async def test_concurrent_settles_capture_once(db: Database) -> None:
    gateway, clock = FakeGateway(), Clock()
    settlement = service(db, gateway, clock)
    session_id = await new_session(db, gateway)

    await asyncio.gather(*(settlement.settle(session_id) for _ in range(5)))

    row, done = await stored(db, session_id)
    assert gateway.calls["capture"] == 1
    assert (row.status, row.captured) == ("settled", Decimal("5.00"))  # 10 kWh × 0.45 + 0.50
    assert done is not None and done.state == "done"


async def test_a_failed_capture_is_finished_by_the_reconciler(db: Database) -> None:
    gateway, clock = FlakyGateway(failures=1), Clock()
    settlement = service(db, gateway, clock, stripe_timeout_s=5)
    session_id = await new_session(db, gateway)

    await settlement.settle(session_id)
    pending_row, pending = await stored(db, session_id)
    clock.now += timedelta(seconds=11)
    await settlement.reconcile()

    row, done = await stored(db, session_id)
    assert pending_row.status == "stopping" and pending is not None
    assert pending.state == "pending" and pending.attempts == 1
    assert (row.status, row.captured) == ("settled", Decimal("5.00"))
    assert done is not None and done.state == "done"
    assert gateway.intents[row.payment_reference or ""].captured_minor == 500


async def test_a_capture_that_landed_before_a_crash_is_recorded_not_repeated(db: Database) -> None:
    gateway, clock = FakeGateway(), Clock()
    session_id = await new_session(db, gateway)
    row, _ = await stored(db, session_id)
    async with db.session() as session:
        session.add(
            SettlementRow(
                session_id=session_id,
                action="capture",
                amount=Decimal("5.00"),
                currency="usd",
                payment_reference=row.payment_reference or "",
                idempotency_key=f"settle_{session_id}",
                state="pending",
                node_id="node-a",
                attempts=0,
                created_at=T0,
            )
        )
    await gateway.capture(row.payment_reference or "", 500, idempotency_key="before-crash")

    await service(db, gateway, clock).reconcile(startup=True)

    after, _ = await stored(db, session_id)
    assert gateway.calls["capture"] == 1 and gateway.calls["retrieve"] == 1
    assert (after.status, after.captured) == ("settled", Decimal("5.00"))


async def test_nothing_delivered_releases_the_hold(db: Database) -> None:
    gateway, clock = FakeGateway(), Clock()
    session_id = await new_session(db, gateway, energy_wh="0")

    await service(db, gateway, clock).settle(session_id)

    row, _ = await stored(db, session_id)
    assert (row.status, row.captured) == ("cancelled", Decimal(0))
    assert gateway.calls["cancel"] == 1 and gateway.calls["capture"] == 0


async def test_a_session_never_started_has_its_hold_released_after_the_timeout(
    db: Database,
) -> None:
    gateway, clock = FakeGateway(), Clock()
    settlement = service(db, gateway, clock, session_start_timeout_s=60)
    session_id = await new_session(db, gateway, energy_wh="0", started=False, status="authorized")

    early = await settlement.reconcile()
    clock.now += timedelta(seconds=61)
    late = await settlement.reconcile()

    row, _ = await stored(db, session_id)
    assert (early, late) == (0, 1)
    assert (row.status, row.stop_reason) == ("cancelled", "start_timeout")
    assert gateway.intents[row.payment_reference or ""].status == "canceled"


async def test_the_capture_never_exceeds_the_cap(db: Database) -> None:
    gateway, clock = FakeGateway(), Clock()
    session_id = await new_session(db, gateway, energy_wh="100000")  # 45.50 uncapped

    await service(db, gateway, clock).settle(session_id)

    row, _ = await stored(db, session_id)
    assert (row.status, row.captured) == ("settled", Decimal("20.00"))


async def test_a_hold_whose_outcome_was_never_recorded_is_found_and_released(
    db: Database,
) -> None:
    gateway, clock = FakeGateway(), Clock()
    settlement = service(db, gateway, clock, stripe_timeout_s=5)
    session_id = await new_session(db, gateway, started=False, status="authorized")
    reference = session_id.removeprefix("ses_")
    gateway.sessions[reference] = session_id  # the hold carries the session in its metadata
    async with db.session() as session:
        row = await session.get(SessionRow, session_id)
        assert row is not None
        row.payment_reference, row.payment_status = None, "pending"
        row.payment_source = "payment_method:pm_card_visa"

    early = await settlement.reconcile()
    clock.now += timedelta(seconds=11)
    late = await settlement.reconcile()

    row, _ = await stored(db, session_id)
    assert (early, late) == (0, 1)
    assert (row.status, row.payment_status) == ("failed", "canceled")
    assert row.payment_reference == reference
    assert gateway.intents[reference].status == "canceled"
    assert gateway.calls["authorize"] == 1  # looked up, never requested again


async def test_a_hold_request_stripe_never_received_ends_the_session_without_a_hold(
    db: Database,
) -> None:
    gateway, clock = FakeGateway(), Clock()
    settlement = service(db, gateway, clock, stripe_timeout_s=5)
    session_id = await new_session(db, gateway, started=False, status="authorized")
    async with db.session() as session:
        row = await session.get(SessionRow, session_id)
        assert row is not None
        row.payment_reference, row.payment_status = None, "unknown"

    clock.now += timedelta(seconds=11)
    acted = await settlement.reconcile()

    row, _ = await stored(db, session_id)
    assert acted == 1
    assert (row.status, row.payment_status, row.payment_reference) == ("failed", "none", None)
    assert gateway.calls["authorize"] == 1


async def test_a_session_whose_charge_point_fell_silent_is_settled_for_what_was_metered(
    db: Database,
) -> None:
    gateway, clock = FakeGateway(), Clock()
    settlement = service(db, gateway, clock, session_start_timeout_s=60)
    session_id = await new_session(db, gateway, status="charging")

    clock.now += timedelta(seconds=359)
    early = await settlement.reconcile()
    clock.now += timedelta(seconds=2)
    late = await settlement.reconcile()

    row, _ = await stored(db, session_id)
    assert (early, late) == (0, 1)
    assert (row.status, row.captured, row.stop_reason) == (
        "settled",
        Decimal("5.00"),
        "charge_point_silent",
    )


async def test_a_stop_while_the_hold_request_is_in_flight_leaves_the_session_to_it(
    db: Database,
) -> None:
    gateway, clock = FakeGateway(), Clock()
    session_id = await new_session(db, gateway, energy_wh="0", started=False, status="authorized")
    async with db.session() as session:
        row = await session.get(SessionRow, session_id)
        assert row is not None
        row.payment_reference, row.payment_status = None, "pending"

    await service(db, gateway, clock).settle(session_id, reason="agent_suspended")

    row, settlement = await stored(db, session_id)
    assert (row.status, row.stop_reason, settlement) == ("stopping", "agent_suspended", None)


async def test_the_open_hold_of_a_session_that_ended_is_released_by_the_reconciler(
    db: Database,
) -> None:
    gateway, clock = FakeGateway(), Clock()
    session_id = await new_session(db, gateway, energy_wh="0", started=False, status="failed")

    acted = await service(db, gateway, clock).reconcile()
    again = await service(db, gateway, clock).reconcile()

    row, _ = await stored(db, session_id)
    assert (acted, again) == (1, 0)
    assert (row.status, row.payment_status) == ("failed", "canceled")
    assert gateway.intents[row.payment_reference or ""].status == "canceled"


async def test_a_session_whose_charge_point_still_heartbeats_is_not_settled_as_silent(
    db: Database,
) -> None:
    gateway, clock = FakeGateway(), Clock()
    settlement = service(db, gateway, clock, session_start_timeout_s=60)
    session_id = await new_session(db, gateway, status="charging")
    clock.now += timedelta(seconds=361)
    async with db.session() as session:
        session.add(ChargePointRow(charge_point_id="CP-1", password_hash="x", last_seen=clock.now))

    quiet = await settlement.reconcile()
    clock.now += timedelta(seconds=361)
    silent = await settlement.reconcile()

    row, _ = await stored(db, session_id)
    assert (quiet, silent) == (0, 1)
    assert (row.status, row.stop_reason) == ("settled", "charge_point_silent")


class ConnectedChargePoints:
    """The OCPP side as the reconciler sees it: which charge points are connected here."""

    def __init__(self, *connected: str) -> None:
        self.connected = set(connected)
        self.stops: list[tuple[str, str]] = []

    def is_connected(self, charge_point_id: str) -> bool:
        return charge_point_id in self.connected

    def is_connected_here(self, charge_point_id: str) -> bool:
        return charge_point_id in self.connected

    def post_stop_transaction(self, charge_point_id: str, transaction_ref: str) -> None:
        self.stops.append((charge_point_id, transaction_ref))


async def test_a_connected_charge_point_that_does_not_end_a_stopped_session_is_told_again(
    db: Database,
) -> None:
    gateway, clock, ocpp = FakeGateway(), Clock(), ConnectedChargePoints("CP-1")
    settings = Settings(
        database_url=db.url,
        node_id="node-a",
        session_start_timeout_s=60,
        session_stop_timeout_s=300,
    )
    settlement = SettlementService(
        db,
        settings,
        gateway,
        SessionEvents(),
        clock,
        ocpp,  # type: ignore[arg-type]
    )
    session_id = await new_session(db, gateway, status="stopping")
    async with db.session() as session:
        row = await session.get(SessionRow, session_id)
        assert row is not None
        row.stopped_at = None  # told to stop; the charge point has not ended it yet
        row.stop_requested_at = T0

    await settlement.reconcile()
    clock.now += timedelta(seconds=1)  # however recently it sent meter values
    await settlement.reconcile()
    clock.now += timedelta(seconds=298)
    await settlement.reconcile()
    during, _ = await stored(db, session_id)
    clock.now += timedelta(seconds=2)  # past session_stop_timeout_s: the station ends it
    await settlement.reconcile()

    row, settlement_row = await stored(db, session_id)
    assert ocpp.stops == [("CP-1", "tx-1")] * 3
    assert during.status == "stopping"
    assert (row.status, row.stop_reason) == ("settled", "stop_ignored")
    assert settlement_row is not None and settlement_row.action == "capture"


async def test_a_start_not_yet_reported_by_a_charge_point_away_is_waited_for(
    db: Database,
) -> None:
    gateway, clock, ocpp = FakeGateway(), Clock(), ConnectedChargePoints()  # CP-1 is away
    settings = Settings(database_url=db.url, node_id="node-a", session_start_timeout_s=60)
    settlement = SettlementService(
        db,
        settings,
        gateway,
        SessionEvents(),
        clock,
        ocpp,  # type: ignore[arg-type]
    )
    session_id = await new_session(db, gateway, energy_wh="0", started=False, status="authorized")

    clock.now += timedelta(seconds=61)  # past the start timeout: it may be charging offline
    early = await settlement.reconcile()
    during, _ = await stored(db, session_id)
    clock.now += timedelta(seconds=300)  # past the silence: given up on
    late = await settlement.reconcile()

    row, _ = await stored(db, session_id)
    assert (early, during.status) == (0, "authorized")
    assert late == 1
    assert (row.status, row.stop_reason) == ("cancelled", "start_timeout")


async def test_the_stop_timeout_counts_only_time_the_charge_point_was_connected(
    db: Database,
) -> None:
    """At 600x simulated time a station restart of seconds is hours of offline charging:
    a charge point away (or a station down) does not run down its stop timer."""
    gateway, clock, ocpp = FakeGateway(), Clock(), ConnectedChargePoints()
    settings = Settings(
        database_url=db.url, node_id="node-a", session_start_timeout_s=60,
        session_stop_timeout_s=300,
    )  # fmt: skip
    settlement = SettlementService(
        db, settings, gateway, SessionEvents(), clock, ocpp,  # type: ignore[arg-type]
    )  # fmt: skip
    session_id = await new_session(db, gateway, status="stopping")
    async with db.session() as session:
        row = await session.get(SessionRow, session_id)
        assert row is not None
        row.stopped_at, row.stop_requested_at = None, T0

    for _ in range(4):  # 5 minutes away (short of the silence): none of it counts
        await settlement.reconcile()
        clock.now += timedelta(seconds=75)
    ocpp.connected.add("CP-1")  # back: delivering its backlog, told to stop again
    await settlement.reconcile()
    clock.now += timedelta(seconds=290)
    await settlement.reconcile()
    during, _ = await stored(db, session_id)
    clock.now += timedelta(seconds=20)  # 310 s connected since the stop: ended
    await settlement.reconcile()

    row, _ = await stored(db, session_id)
    assert during.status == "stopping"
    assert (row.status, row.stop_reason) == ("settled", "stop_ignored")
    assert ocpp.stops == [("CP-1", "tx-1")] * 2


async def test_after_a_restart_a_charge_point_gets_the_whole_silence_to_come_back(
    db: Database,
) -> None:
    gateway, clock, ocpp = FakeGateway(), Clock(), ConnectedChargePoints()
    settings = Settings(database_url=db.url, node_id="node-a", session_start_timeout_s=60)
    session_id = await new_session(db, gateway, status="charging")
    clock.now += timedelta(hours=2)  # the station was down (the session's row is old)
    settlement = SettlementService(
        db, settings, gateway, SessionEvents(), clock, ocpp,  # type: ignore[arg-type]
    )  # fmt: skip

    await settlement.reconcile()
    just_started, _ = await stored(db, session_id)
    clock.now += timedelta(minutes=6, seconds=1)  # the silence: 6 x 60 s
    await settlement.reconcile()

    row, _ = await stored(db, session_id)
    assert just_started.status == "charging"
    assert (row.status, row.stop_reason) == ("settled", "charge_point_silent")


async def test_the_start_timeout_counts_only_time_the_charge_point_was_connected(
    db: Database,
) -> None:
    """Back from an outage, a charge point delivers its queue in order: its start may come
    after a backlog, so only the time it was connected counts toward the start timeout."""
    gateway, clock, ocpp = FakeGateway(), Clock(), ConnectedChargePoints()  # CP-1 is away
    settings = Settings(database_url=db.url, node_id="node-a", session_start_timeout_s=60)
    settlement = SettlementService(
        db, settings, gateway, SessionEvents(), clock, ocpp,  # type: ignore[arg-type]
    )  # fmt: skip
    session_id = await new_session(db, gateway, energy_wh="0", started=False, status="authorized")

    clock.now += timedelta(seconds=100)  # away, within the silence
    await settlement.reconcile()
    ocpp.connected.add("CP-1")  # back: its queue is on the way
    await settlement.reconcile()
    clock.now += timedelta(seconds=50)
    await settlement.reconcile()
    during, _ = await stored(db, session_id)
    clock.now += timedelta(seconds=15)  # 65 s connected without a start: given up on
    await settlement.reconcile()

    row, _ = await stored(db, session_id)
    assert during.status == "authorized"
    assert (row.status, row.stop_reason) == ("cancelled", "start_timeout")
