"""A hold request whose answer never came back (Stripe placed it, the station did not hear)
is resolved by looking for the PaymentIntent, never by sending the request again: the hold
is adopted while the accept still waits, else released by the reconciler — never left open.

Stripe sits behind `StripeProxy`, which enforces Stripe's idempotency rule (the same key
with other parameters is a 400 idempotency_error), as localstripe alone does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import stripe
from sqlalchemy import select

from simulators.stripe_proxy import Fault, StripeProxy
from station.store.payments import SessionRow
from station.store.trust import SpendRow
from tests.adversarial.test_settlement_survives_a_stripe_outage import until
from tests.e2e.conftest import World, battery

FAST = {"stripe_timeout_s": 1, "reconcile_interval_s": 0.3}


def holds_for(client: stripe.StripeClient, session_id: str) -> list[dict[str, Any]]:
    intents = client.v1.payment_intents.list({"limit": 100})
    every = [i.to_dict() for i in intents.auto_paging_iter()]
    return [i for i in every if i["metadata"].get("session_id") == session_id]


@asynccontextmanager
async def proxied_world(
    make_world: Callable[..., Any], stripe_url: str
) -> AsyncIterator[tuple[World, StripeProxy]]:
    proxy = StripeProxy(stripe_url)
    async with proxy.running(), make_world(stripe_api_base=proxy.url, **FAST) as world:
        yield world, proxy


async def only_session(world: World) -> SessionRow:
    async with world.station.db.reader() as db:
        (row,) = (
            await db.scalars(select(SessionRow).where(SessionRow.agent_id == world.agent_id))
        ).all()
        db.expunge_all()
        return row


async def failed_session(world: World) -> SessionRow | None:
    row = await only_session(world)
    return row if row.status == "failed" else None


async def ledger(world: World, session_id: str) -> tuple[Decimal, str]:
    async with world.station.db.reader() as db:
        spend = await db.get(SpendRow, session_id)
        assert spend is not None
        return spend.amount, spend.status


async def test_a_hold_whose_answer_was_lost_is_adopted_and_the_session_proceeds(
    make_world: Callable[..., Any], stripe_url: str, stripe_client: stripe.StripeClient
) -> None:
    async with proxied_world(make_world, stripe_url) as (world, proxy):
        cp = await world.charge_point("ocpp2.0.1")
        async with cp:
            await asyncio.wait_for(cp.booted.wait(), 10)
            cp.plug_in(1, battery("5"))
            negotiation = await world.negotiate(cp, "5")
            # The hold lands in Stripe and the answer is lost, on the first try and the
            # SDK's own retry (which Stripe answers from its store).
            proxy.fault(Fault.FORWARD_THEN_DROP, operation="authorize", times=2)

            response = await world.pay(negotiation, "5.00")

            session_id = response.json().get("session_id")
            holds = holds_for(stripe_client, session_id) if session_id else []

    assert response.status_code == 201, response.text
    assert response.json()["status"] in {"authorized", "charging"}
    assert [h["status"] for h in holds] == ["requires_capture"]
    assert response.json()["payment"]["reference"] == holds[0]["id"]
    assert proxy.idempotency_errors == 0


async def test_a_hold_placed_after_the_station_gave_up_is_released_not_left_open(
    make_world: Callable[..., Any], stripe_url: str, stripe_client: stripe.StripeClient
) -> None:
    async with proxied_world(make_world, stripe_url) as (world, proxy):
        cp = await world.charge_point("ocpp1.6")
        async with cp:
            await asyncio.wait_for(cp.booted.wait(), 10)
            cp.plug_in(1, battery("5"))
            negotiation = await world.negotiate(cp, "5")
            proxy.fault(Fault.FORWARD_THEN_DROP, operation="authorize", times=2)
            proxy.fault(Fault.HANG, operation="list", times=1)  # the accept's look fails too

            response = await world.pay(negotiation, "5.00")
            during = await only_session(world)
            held_during = await ledger(world, during.session_id)

            final = await until(lambda: failed_session(world))
            released = await ledger(world, final.session_id)
            holds = holds_for(stripe_client, final.session_id)

    assert response.status_code == 503, response.text
    # While the outcome is unknown the session is not final and the allowance is held.
    assert (during.status, during.payment_status) == ("authorized", "unknown")
    assert held_during == (Decimal("5.00"), "held")
    assert [h["status"] for h in holds] == ["canceled"]
    assert (final.payment_reference, final.payment_status) == (holds[0]["id"], "canceled")
    assert released == (Decimal(0), "settled")
    assert proxy.idempotency_errors == 0


async def test_a_hold_request_that_never_reached_stripe_ends_the_session_without_a_hold(
    make_world: Callable[..., Any], stripe_url: str, stripe_client: stripe.StripeClient
) -> None:
    async with proxied_world(make_world, stripe_url) as (world, proxy):
        cp = await world.charge_point("ocpp2.1")
        async with cp:
            await asyncio.wait_for(cp.booted.wait(), 10)
            cp.plug_in(1, battery("5"))
            negotiation = await world.negotiate(cp, "5")
            proxy.fault(Fault.HANG, operation="authorize", times=1)

            response = await world.pay(negotiation, "5.00")
            final = await until(lambda: failed_session(world))
            released = await ledger(world, final.session_id)
            again = await world.pay(await world.negotiate(cp, "5"), "5.00")

    assert response.status_code == 503, response.text
    assert (final.payment_reference, final.payment_status) == (None, "none")
    assert holds_for(stripe_client, final.session_id) == []
    assert released == (Decimal(0), "settled")
    assert again.status_code == 201, again.text
