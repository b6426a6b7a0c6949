"""Concurrent accepts: one negotiation gets one hold, whatever arrives at once; the store
itself refuses a second live session for one negotiation."""

from __future__ import annotations

import asyncio

import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from station.payments.fake_gateway import FakeGateway
from station.store.db import Database
from station.store.payments import SessionRow
from tests.e2e.conftest import World, battery, credential
from tests.payments.test_settlement import new_session


def intents_of(client: stripe.StripeClient, agent_id: str) -> list[dict[str, object]]:
    intents = client.v1.payment_intents.list({"limit": 100}).data
    return [i.to_dict() for i in intents if i.to_dict()["metadata"].get("agent_id") == agent_id]


async def test_two_credentials_for_one_negotiation_at_once_place_one_hold(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        cp.plug_in(1, battery("5"))
        negotiation = await world.negotiate(cp, "5")
        first = await world.challenge(negotiation, "5.00")
        second = await world.challenge(negotiation, "5.00")

        responses = await asyncio.gather(
            world.accept(negotiation, "5.00", credential(first)),
            world.accept(negotiation, "5.00", credential(second)),
        )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409], [r.text for r in responses]
    assert len(intents_of(stripe_client, world.agent_id)) == 1  # one hold on the card


async def test_the_store_refuses_a_second_live_session_for_one_negotiation(db: Database) -> None:
    gateway = FakeGateway()
    first = await new_session(db, gateway, status="failed")  # neg_1, no longer live
    await new_session(db, gateway, status="authorized")  # neg_1 again: allowed

    with pytest.raises(IntegrityError, match="negotiation_id"):
        await new_session(db, gateway, status="charging")  # a second live one

    async with db.reader() as session:
        statuses = sorted((await session.scalars(select(SessionRow.status))).all())
    assert first and statuses == ["authorized", "failed"]
