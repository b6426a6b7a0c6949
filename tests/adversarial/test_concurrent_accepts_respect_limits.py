"""Spending limits under concurrency: accepts that arrive together never hold past the window.

Also a regression test for the shutdown hang on PostgreSQL (review bug 4): a
connection's send loop whose cancellation was swallowed by ``call()`` went
back to waiting on its outbox, and the station never finished stopping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import stripe

from tests.e2e.conftest import World, battery, credential


def open_holds(client: stripe.StripeClient, agent_id: str) -> list[dict[str, Any]]:
    intents = [i.to_dict() for i in client.v1.payment_intents.list({"limit": 100}).data]
    return [
        i
        for i in intents
        if i["metadata"].get("agent_id") == agent_id
        and i["status"] in ("requires_capture", "succeeded")
    ]


async def test_four_accepts_at_once_never_hold_more_than_the_window_allows(
    make_world: Callable[..., Any], stripe_client: stripe.StripeClient
) -> None:
    async with make_world() as world:
        world: World
        patched = await world.admin.patch(
            f"/v1/admin/agents/{world.agent_id}",
            # a session limit may not pass the window limit
            json={"limit_per_session": "10.00", "limit_per_window": "10.00"},
        )
        assert patched.status_code == 200, patched.text
        cp = await world.charge_point("ocpp2.0.1", evse_count=4)
        async with cp:
            await asyncio.wait_for(cp.booted.wait(), 10)
            negotiations = []
            for evse_id in range(1, 5):
                cp.plug_in(evse_id, battery("5"))
                response = await world.agent.post(
                    "/v1/negotiations",
                    json={
                        "charge_point_id": cp.charge_point_id,
                        "evse_id": evse_id,
                        "energy_kwh": "5",
                    },
                )
                negotiations.append(response.json())
            # every challenge is issued while the window is still empty
            challenges = [await world.challenge(n, "4.00") for n in negotiations]

            responses = await asyncio.gather(
                *(
                    world.accept(n, "4.00", credential(c))
                    for n, c in zip(negotiations, challenges, strict=True)
                )
            )
            held = open_holds(stripe_client, world.agent_id)

    codes = sorted(
        str(r.status_code if r.status_code != 403 else r.json()["code"]) for r in responses
    )
    assert codes == ["201", "201", "amount_exceeded", "amount_exceeded"], [
        r.text for r in responses
    ]
    assert len(held) == 2
    assert sum(Decimal(h["amount"]) for h in held) == 800
