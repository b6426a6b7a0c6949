"""The unit-of-work port's contract, run against every adapter.

The same tests drive the SQLAlchemy adapter on SQLite and on PostgreSQL and
the in-memory fake (`tests.fakes.unit_of_work`), so a service test that runs
on the fake is testing what the database would do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from station.domain.decide import decide
from station.domain.money import Money
from station.domain.negotiation import PricingPolicy
from station.domain.session import PaymentStatus, Session, SessionStatus
from station.domain.session_events import (
    Metered,
    PaymentSettled,
    SettlementDue,
    StopRequested,
    TransactionEnded,
)
from station.domain.tariff import Tariff
from station.errors import NotFound
from station.services.repositories.agents import Agent
from station.services.repositories.negotiations import LiveCount, Negotiation, Offer
from station.services.repositories.reports import SessionFilter
from station.services.repositories.spend import Spend
from station.services.repositories.switches import Switch
from station.services.unit_of_work import AlreadyExists, UnitOfWorkFactory
from station.store.db import Database
from station.store.unit_of_work import SqlUnitsOfWork
from tests.conftest import _pg_create, _pg_drop, _pg_url
from tests.domain.session_builders import NODE, a_report, a_session, at
from tests.fakes.unit_of_work import FakeStore

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "fake"])
async def units(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    if request.param == "fake":
        yield FakeStore()
        return
    if request.param == "sqlite":
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'station.db'}", None
    else:
        name = f"chargepay_{uuid.uuid4().hex[:12]}"
        try:
            await _pg_create(name)
        except OSError as exc:
            pytest.fail(f"PostgreSQL is required: {exc}")
        url = _pg_url(name)
    db = Database(url)
    await db.upgrade()
    try:
        yield SqlUnitsOfWork(db)
    finally:
        await db.dispose()
        if name is not None:
            await _pg_drop(name)


def agent(agent_id: str = "agt_1", **changes: object) -> Agent:
    base = Agent(
        agent_id=agent_id,
        name="fleet car 7",
        owner=None,
        public_key="A" * 43 + "=",
        currency="usd",
        limit_per_session=Decimal("50.0000"),
        limit_per_window=Decimal("200.1234"),
        window_hours=24,
        allowed_charge_points=("CP-1", "CP-2"),
        status="active",
        suspended_reason=None,
        created_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_an_added_agent_reads_back_equal(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.agents.add(agent())

    async with units.reader() as uow:
        got = await uow.agents.get("agt_1")

    assert got == agent()
    assert got is not None and got.created_at.tzinfo is not None


async def test_an_unknown_agent_is_none(units: UnitOfWorkFactory) -> None:
    async with units.reader() as uow:
        assert await uow.agents.get("agt_none") is None
        assert await uow.agents.get("agt_none", lock=True) is None


async def test_a_taken_id_is_already_exists_and_the_unit_goes_on(
    units: UnitOfWorkFactory,
) -> None:
    async with units() as uow:
        await uow.agents.add(agent())

    async with units() as uow:
        with pytest.raises(AlreadyExists) as refused:
            await uow.agents.add(agent(name="impostor"))
        await uow.agents.add(agent("agt_2"))

    assert refused.value.key == "agent_id"
    assert refused.value.status == 409
    async with units.reader() as uow:
        assert [a.name for a in await uow.agents.list()] == ["fleet car 7", "fleet car 7"]


async def test_saving_changes_every_field_but_the_id(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.agents.add(agent())
    changed = agent(
        name="renamed",
        owner="ops",
        limit_per_session=Decimal("0.0100"),
        allowed_charge_points=None,
        status="suspended",
        suspended_reason="lost key",
    )

    async with units() as uow:
        await uow.agents.save(changed)

    async with units.reader() as uow:
        assert await uow.agents.get("agt_1") == changed


async def test_saving_an_absent_agent_is_not_found(units: UnitOfWorkFactory) -> None:
    with pytest.raises(NotFound):
        async with units() as uow:
            await uow.agents.save(agent())


async def test_listing_is_oldest_first_and_filters_by_status(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.agents.add(agent("agt_b", created_at=T0 + timedelta(hours=1)))
        await uow.agents.add(agent("agt_c", created_at=T0, status="suspended"))
        await uow.agents.add(agent("agt_a", created_at=T0))

    async with units.reader() as uow:
        every = [a.agent_id for a in await uow.agents.list()]
        suspended = [a.agent_id for a in await uow.agents.list(status="suspended")]

    assert every == ["agt_a", "agt_c", "agt_b"]
    assert suspended == ["agt_c"]


async def test_an_exception_rolls_the_whole_unit_back(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.agents.add(agent())

    with pytest.raises(RuntimeError):
        async with units() as uow:
            await uow.agents.add(agent("agt_2"))
            await uow.agents.save(agent(status="suspended"))
            await uow.audit.record(actor="test", action="agent.suspended", subject="agt_1")
            raise RuntimeError("boom")

    async with units.reader() as uow:
        assert [a.agent_id for a in await uow.agents.list()] == ["agt_1"]
        assert (await uow.agents.get("agt_1")) == agent()


async def test_a_reader_keeps_nothing(units: UnitOfWorkFactory) -> None:
    async with units.reader() as uow:
        await uow.agents.add(agent())

    async with units.reader() as uow:
        assert await uow.agents.get("agt_1") is None


async def test_the_audit_log_refuses_floats(units: UnitOfWorkFactory) -> None:
    with pytest.raises(TypeError):
        async with units() as uow:
            await uow.audit.record(actor="test", action="x", data={"amount": 1.5})


async def test_locked_read_then_write_units_serialise(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.agents.add(agent(window_hours=0))

    async def bump() -> None:
        async with units() as uow:
            current = await uow.agents.get("agt_1", lock=True)
            assert current is not None
            await asyncio.sleep(0.01)  # let the other unit try to interleave
            await uow.agents.save(replace(current, window_hours=current.window_hours + 1))

    await asyncio.gather(*(bump() for _ in range(5)))

    async with units.reader() as uow:
        got = await uow.agents.get("agt_1")
    assert got is not None and got.window_hours == 5


async def test_a_unit_is_entered_once(units: UnitOfWorkFactory) -> None:
    uow = units()
    async with uow:
        pass

    with pytest.raises(RuntimeError):
        async with uow:
            pass


# -- sessions (the Session aggregate with its settlement intent) --------------------------


def a_stored_session(n: int = 1, **changes: object) -> Session:
    base = replace(
        a_session(),
        session_id=f"ses_{n}",
        challenge_id=f"ch_{n}",
        id_token=f"TOKEN{n}",
        cost=Money(Decimal(0), "eur"),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_an_added_session_reads_back_equal_by_id_and_by_token(
    units: UnitOfWorkFactory,
) -> None:
    session = a_stored_session()

    async with units() as uow:
        await uow.sessions.add(session)
    async with units.reader() as uow:
        by_id = await uow.sessions.get("ses_1")
        by_token = await uow.sessions.by_id_token("TOKEN1", lock=True)
        missing = await uow.sessions.get("ses_9")

    assert by_id == session and by_token == session and missing is None


async def test_a_decided_session_saves_with_its_settlement_intent(
    units: UnitOfWorkFactory,
) -> None:
    async with units() as uow:
        await uow.sessions.add(a_stored_session())
    charged, _ = decide(a_stored_session(), Metered(a_report("3333", 20), at(20)))
    intended, _ = decide(charged, SettlementDue(at(21), NODE))
    settled, _ = decide(intended, PaymentSettled("pi_1", "succeeded", 183, at(22)))

    for step in (charged, intended, settled):
        async with units() as uow:
            assert await uow.sessions.get("ses_1", lock=True) is not None
            await uow.sessions.save(step)
        async with units.reader() as uow:
            assert await uow.sessions.get("ses_1") == step


async def test_a_second_live_session_of_a_negotiation_already_exists(
    units: UnitOfWorkFactory,
) -> None:
    async with units() as uow:
        await uow.sessions.add(a_stored_session(1))

    with pytest.raises(AlreadyExists) as refused:
        async with units() as uow:
            await uow.sessions.add(a_stored_session(2))
    async with units() as uow:
        first = await uow.sessions.get("ses_1", lock=True)
        assert first is not None
        await uow.sessions.save(replace(first, status=SessionStatus.FAILED))
    async with units() as uow:
        await uow.sessions.add(a_stored_session(3))

    assert refused.value.key == "negotiation"
    async with units.reader() as uow:
        assert await uow.sessions.live_session_of_agent("agent_1") == "ses_3"


async def test_saving_an_absent_session_is_not_found(units: UnitOfWorkFactory) -> None:
    with pytest.raises(NotFound):
        async with units() as uow:
            await uow.sessions.save(a_stored_session())


# -- trust, negotiations ------------------------------------------------------------------


async def test_a_switch_is_created_then_replaced(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.switches.put(Switch("pause", True, "incident", "ops", T0))
    async with units() as uow:
        await uow.switches.put(Switch("pause", False, None, "ops2", T0 + timedelta(minutes=1)))

    async with units.reader() as uow:
        got = await uow.switches.get("pause", lock=True)
        absent = await uow.switches.get("pm:nothing")

    assert got == Switch("pause", False, None, "ops2", T0 + timedelta(minutes=1))
    assert absent is None


async def test_the_spend_ledger_sums_an_agents_window(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.agents.add(agent())
        await uow.agents.add(agent("agt_2"))
        for session_id, owner, amount, at in [
            ("ses_old", "agt_1", "10.00", T0 - timedelta(hours=1)),
            ("ses_a", "agt_1", "20.0001", T0),
            ("ses_b", "agt_1", "30.00", T0 + timedelta(minutes=5)),
            ("ses_other", "agt_2", "99.00", T0),
        ]:
            await uow.spend.add(Spend(session_id, owner, "usd", Decimal(amount), "held", at))

    async with units.reader() as uow:
        total = await uow.spend.total("agt_1", since=T0)
        excluding = await uow.spend.total("agt_1", since=T0, excluding="ses_b")
        nothing = await uow.spend.total("agt_none", since=T0)

    assert (total, excluding, nothing) == (Decimal("50.0001"), Decimal("20.0001"), Decimal(0))


async def test_a_spend_entry_settles_and_is_unique_per_session(units: UnitOfWorkFactory) -> None:
    held = Spend("ses_1", "agt_1", "usd", Decimal("40.00"), "held", T0)
    async with units() as uow:
        await uow.agents.add(agent())
        await uow.spend.add(held)
        with pytest.raises(AlreadyExists):
            await uow.spend.add(held)

    settled = replace(held, amount=Decimal("12.34"), status="settled", settled_at=T0)
    async with units() as uow:
        await uow.spend.save(settled)
        with pytest.raises(NotFound):
            await uow.spend.save(replace(held, session_id="ses_none"))

    async with units.reader() as uow:
        assert await uow.spend.get("ses_1") == settled
        assert await uow.spend.get("ses_none") is None


async def test_a_nonce_is_accepted_once_per_agent(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.nonces.add("agt_1", "n1", expires_at=T0)
        await uow.nonces.add("agt_2", "n1", expires_at=T0)

    with pytest.raises(AlreadyExists) as replayed:
        async with units() as uow:
            await uow.nonces.add("agt_1", "n1", expires_at=T0 + timedelta(hours=1))

    assert replayed.value.key == "nonce"


async def test_expired_nonces_are_purged_per_agent_in_batches(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        for n in range(3):
            await uow.nonces.add("agt_1", f"old{n}", expires_at=T0 - timedelta(seconds=1))
        await uow.nonces.add("agt_1", "fresh", expires_at=T0 + timedelta(seconds=1))
        await uow.nonces.add("agt_2", "old", expires_at=T0 - timedelta(seconds=1))

    async with units() as uow:
        first = await uow.nonces.purge_expired(T0, agent_id="agt_1", limit=2)
    async with units() as uow:
        second = await uow.nonces.purge_expired(T0, agent_id="agt_1", limit=2)
    async with units() as uow:
        rest = await uow.nonces.purge_expired(T0)

    assert (first, second, rest) == (2, 1, 1)
    with pytest.raises(AlreadyExists):  # the fresh one is still remembered
        async with units() as uow:
            await uow.nonces.add("agt_1", "fresh", expires_at=T0)


def negotiation(negotiation_id: str = "neg_1", **changes: object) -> Negotiation:
    base = Negotiation(
        negotiation_id=negotiation_id,
        agent_id="agt_1",
        charge_point_id="CP-1",
        evse_id=1,
        currency="usd",
        energy_kwh=Decimal("20.000"),
        max_power_kw=None,
        departure_at=None,
        status="open",
        round=1,
        max_rounds=3,
        expires_at=T0 + timedelta(minutes=10),
        created_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def offer(offer_id: str = "off_1", negotiation_id: str = "neg_1") -> Offer:
    return Offer(
        offer_id=offer_id,
        negotiation_id=negotiation_id,
        round=1,
        tariff={"currency": "usd", "energy_price_per_kwh": "0.4200"},
        estimated_cost=Decimal("8.4000"),
        recommended_cap=Decimal("10.0800"),
        valid_until=T0 + timedelta(minutes=2),
        signature="sig",
        created_at=T0,
    )


async def test_a_negotiation_and_its_offer_read_back_equal(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.negotiations.add(negotiation())
        await uow.offers.add(offer())
        await uow.negotiations.save(negotiation(current_offer_id="off_1", detail="why"))

    async with units.reader() as uow:
        got = await uow.negotiations.get("neg_1", lock=True)
        got_offer = await uow.offers.get("off_1")

    assert got == negotiation(current_offer_id="off_1", detail="why")
    assert got_offer == offer()


async def test_an_offer_needs_its_negotiation_and_ids_are_unique(
    units: UnitOfWorkFactory,
) -> None:
    async with units() as uow:
        with pytest.raises(NotFound):
            await uow.offers.add(offer(negotiation_id="neg_none"))
        with pytest.raises(NotFound):
            await uow.negotiations.save(negotiation())

    with pytest.raises(AlreadyExists):
        async with units() as uow:
            await uow.negotiations.add(negotiation())
            await uow.negotiations.add(negotiation(status="agreed"))


async def test_live_negotiations_count_by_status_and_expiry(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.negotiations.add(negotiation("neg_1", expires_at=T0 + timedelta(minutes=5)))
        await uow.negotiations.add(negotiation("neg_2", expires_at=T0 + timedelta(minutes=1)))
        await uow.negotiations.add(negotiation("neg_3", status="rejected"))
        await uow.negotiations.add(negotiation("neg_4", expires_at=T0))
        await uow.negotiations.add(negotiation("neg_5", agent_id="agt_2"))

    async with units.reader() as uow:
        live = await uow.negotiations.live("agt_1", statuses=("open", "agreed"), now=T0)
        none = await uow.negotiations.live("agt_none", statuses=("open",), now=T0)

    assert live == LiveCount(2, T0 + timedelta(minutes=1))
    assert none == LiveCount(0, None)


async def test_an_accepted_negotiation_is_no_longer_live(units: UnitOfWorkFactory) -> None:
    # It stays agreed until it expires; the agent's ceiling counts only those not taken.
    async with units() as uow:
        await uow.negotiations.add(negotiation("neg_1", status="agreed"))
        await uow.negotiations.add(negotiation("neg_2", status="agreed"))
        await uow.sessions.add(a_stored_session(1, negotiation_id="neg_1", agent_id="agt_1"))

    async with units.reader() as uow:
        live = await uow.negotiations.live("agt_1", statuses=("open", "agreed"), now=T0)

    assert live.count == 1


async def test_audit_entries_chain_and_commit_with_their_unit(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        await uow.audit.record(actor="op", action="agent.registered", subject="agt_1")
        await uow.audit.record(actor="op", action="tariff.set", data={"price": Decimal("0.45")})
    with pytest.raises(RuntimeError):
        async with units() as uow:
            await uow.audit.record(actor="op", action="rolled.back")
            raise RuntimeError("boom")

    async with units.reader() as uow:
        verified = await uow.audit.verify()
        lines = [line async for line in uow.audit.export_lines()]
        after_first = [line async for line in uow.audit.export_lines(after_seq=1)]
        cut = await uow.audit.verify(expected_head="0" * 64)

    assert (verified.ok, verified.rows) == (True, 2)
    assert len(lines) == 2 and all(line.endswith("\n") for line in lines)
    assert '"action":"tariff.set"' in lines[1] and '"price":"0.45"' in lines[1]
    assert after_first == lines[1:]
    assert verified.head in lines[1]
    assert not cut.ok


async def test_prices_fall_back_to_the_default_and_a_tariff_can_be_dropped(
    units: UnitOfWorkFactory,
) -> None:
    default = Tariff("usd", Decimal("0.5000"), session_fee=Decimal("1.00"), tariff_id="std")
    fast = Tariff("usd", Decimal("0.6100"), max_cost=Decimal("60.00"), tariff_id="fast")
    policy = PricingPolicy(
        currency="usd",
        list_price_per_kwh=Decimal("0.55"),
        floor_price_per_kwh=Decimal("0.35"),
        max_rounds=3,
    )
    async with units() as uow:
        await uow.pricing.set_tariff(default)
        await uow.pricing.set_tariff(fast, "CP-1")
        await uow.pricing.set_tariff(fast, "CP-2")
        await uow.pricing.set_policy(policy)

    async with units() as uow:
        dropped = await uow.pricing.delete_tariff("CP-2")
        again = await uow.pricing.delete_tariff("CP-2")

    async with units.reader() as uow:
        own, other = await uow.pricing.tariff("CP-1"), await uow.pricing.tariff("CP-2")
        every = await uow.pricing.tariffs()
        stored_policy = await uow.pricing.policy("CP-9")
    assert (dropped, again) == (True, False)
    assert (own, other) == (fast, default)
    assert every == {"*": default, "CP-1": fast}
    assert stored_policy == policy


async def test_nothing_stored_is_no_price(units: UnitOfWorkFactory) -> None:
    async with units.reader() as uow:
        assert await uow.pricing.tariff("CP-1") is None
        assert await uow.pricing.policy() is None
        assert await uow.charge_points.get("CP-1") is None


# -- the sessions queries of the kill switch and open payers, and the read models ----------


async def _three_sessions(units: UnitOfWorkFactory) -> None:
    """agent_1 (suspended): ses_1 charging on tx-1, ses_2 settled, ses_3 authorized,
    ses_4 cancelled; two of them paid by one unregistered payer's method."""
    base = a_stored_session()
    rows = [
        (1, SessionStatus.CHARGING, "tx-1", None, "pm:x"),
        (2, SessionStatus.SETTLED, "tx-2", Money(Decimal("4.20"), "eur"), "pm:x"),
        (3, SessionStatus.AUTHORIZED, None, None, None),
        (4, SessionStatus.CANCELLED, None, Money(Decimal(0), "eur"), "pm:x"),
    ]
    async with units() as uow:
        await uow.agents.add(agent("agent_1", status="suspended"))
        for n, status, ref, captured, method in rows:
            await uow.sessions.add(
                a_stored_session(
                    n,
                    negotiation_id=f"neg_{n}",
                    status=status,
                    created_at=base.created_at + timedelta(minutes=n),
                    metering=replace(base.metering, transaction_ref=ref),
                    captured=captured,
                    payment=replace(base.payment, payer_method=method),
                )
            )


async def test_open_sessions_of_suspended_agents_are_found_and_marked_once(
    units: UnitOfWorkFactory,
) -> None:
    await _three_sessions(units)

    async with units.reader() as uow:
        open_ = await uow.sessions.open_of_suspended_agents()
        of_other = await uow.sessions.open_of_suspended_agents("agent_none")
    async with units() as uow:
        await uow.sessions.mark_stop_reason("ses_1", "agent_suspended")
        await uow.sessions.mark_stop_reason("ses_1", "later")

    assert [(s.session_id, s.transaction_ref) for s in open_] == [
        ("ses_1", "tx-1"),
        ("ses_3", None),
    ]
    assert of_other == []
    async with units.reader() as uow:
        marked = await uow.sessions.get("ses_1")
    assert marked is not None and marked.stop_reason == "agent_suspended"


async def test_a_payment_methods_spend_counts_captures_else_caps_not_unpaid_ends(
    units: UnitOfWorkFactory,
) -> None:
    await _three_sessions(units)
    since = a_stored_session().created_at

    async with units.reader() as uow:
        spent = await uow.sessions.spent_by_payer_method("agent_1", "pm:x", since=since)
        later = await uow.sessions.spent_by_payer_method(
            "agent_1", "pm:x", since=since + timedelta(minutes=2)
        )

    cap = a_stored_session().cap.amount
    assert (spent, later) == (cap + Decimal("4.20"), Decimal("4.20"))


async def test_the_read_models_filter_and_count_sessions(units: UnitOfWorkFactory) -> None:
    await _three_sessions(units)
    base = a_stored_session().created_at

    async with units.reader() as uow:
        newest = await uow.reports.sessions(SessionFilter(), limit=2)
        settled = await uow.reports.sessions(SessionFilter(status="settled"), limit=10)
        window = await uow.reports.sessions(
            SessionFilter(
                agent_id="agent_1",
                since=base + timedelta(minutes=2),
                until=base + timedelta(minutes=4),
            ),
            limit=10,
        )
        by_status = await uow.reports.sessions_by_status()
        money = await uow.reports.money_by_session()

    assert [s.session_id for s in newest] == ["ses_4", "ses_3"]
    assert [s.session_id for s in settled] == ["ses_2"]
    assert [s.session_id for s in window] == ["ses_3", "ses_2"]
    assert by_status == {"charging": 1, "settled": 1, "authorized": 1, "cancelled": 1}
    cap = a_stored_session().cap.amount
    assert money.captured == {"eur": Decimal("4.20")}
    assert money.held == {"eur": 2 * cap}
    assert money.released == {"eur": (cap - Decimal("4.20")) + cap}


async def test_the_reconcilers_reads_find_each_session_where_it_stands(
    units: UnitOfWorkFactory,
) -> None:
    unstarted = a_stored_session(1, negotiation_id="neg_1")
    charging, _ = decide(
        a_stored_session(2, negotiation_id="neg_2"), Metered(a_report("100", 1), at(1))
    )
    stopping, _ = decide(charging, StopRequested("agent_requested", at(2)))
    ended, _ = decide(
        a_stored_session(3, negotiation_id="neg_3"),
        TransactionEnded(a_report("100", 1, ended=True), at(1)),
    )
    intended, _ = decide(ended, SettlementDue(at(3), NODE))
    doubt = a_stored_session(
        4,
        negotiation_id="neg_4",
        payment=replace(unstarted.payment, status=PaymentStatus.UNKNOWN, reference=None),
    )
    open_hold = a_stored_session(5, negotiation_id="neg_5", status=SessionStatus.FAILED)
    async with units() as uow:
        for s in (unstarted, stopping, ended, doubt, open_hold):
            await uow.sessions.add(s)
    async with units() as uow:
        await uow.sessions.get("ses_3", lock=True)
        await uow.sessions.save(intended)

    later = at(60)
    async with units.reader() as uow:
        pending = await uow.sessions.pending_settlements()
        assert [(p.session_id, p.node_id) for p in pending] == [("ses_3", NODE)]
        assert [u.session_id for u in await uow.sessions.unstarted(later)] == ["ses_1"]
        assert await uow.sessions.unstarted(at(-1)) == []
        assert await uow.sessions.ended_unsettled(later) == ["ses_3"]
        assert await uow.sessions.ended_unsettled(at(0)) == []
        assert {q.session_id for q in await uow.sessions.quiet(later)} == {"ses_2", "ses_3"}
        (unstopped,) = await uow.sessions.unstopped()
        assert (unstopped.session_id, unstopped.transaction_ref) == ("ses_2", "tx_1")
        assert unstopped.stop_requested_at == at(2)
        assert await uow.sessions.unstopped("CP-other") == []
        assert await uow.sessions.ended_with_open_hold() == ["ses_5"]
        assert await uow.sessions.holds_in_doubt(later) == ["ses_4"]
        assert await uow.sessions.live_session_of_negotiation("neg_5") is None
        assert await uow.sessions.live_session_of_negotiation("neg_2") == "ses_2"
