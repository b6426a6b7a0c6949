"""The clean-up of expired nonces never makes parallel requests of one agent fail.

Each signed request stores its nonce and removes the agent's expired ones.
On PostgreSQL, parallel requests deleting the same expired rows in different
orders deadlocked (issue 15 item 5): one of them got a 500.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy import func, insert, select

from station.app import Station
from station.store.trust import NonceRow
from tests.trust.conftest import SignedAgent, base_url

PARALLEL = 16
ROUNDS = 12
EXPIRED_PER_ROUND = 400


async def _seed_expired(station: Station, agent_id: str, round_: int) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    rows = [
        {"agent_id": agent_id, "nonce": uuid.uuid4().hex, "expires_at": past + timedelta(seconds=i)}
        for i in range(EXPIRED_PER_ROUND)
    ]
    async with station.db.session() as session:
        await session.execute(insert(NonceRow), rows)


async def test_parallel_signed_requests_of_one_agent_all_succeed(
    station: Station, agent: SignedAgent
) -> None:
    statuses: list[int] = []
    async with httpx.AsyncClient(
        base_url=base_url(station), auth=agent.signer(), timeout=30
    ) as client:
        for round_ in range(ROUNDS):
            await _seed_expired(station, agent.agent_id, round_)
            responses = await asyncio.gather(
                *(client.get("/v1/agents/me") for _ in range(PARALLEL))
            )
            statuses += [r.status_code for r in responses]

    assert statuses == [200] * PARALLEL * ROUNDS
    async with station.db.reader() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(NonceRow)
            .where(NonceRow.expires_at < datetime.now(UTC))
        )
    # The clean-up still happens: what was expired before the last round is gone.
    assert left == 0


async def test_the_clean_up_never_waits_for_rows_another_transaction_holds(
    station: Station, agent: SignedAgent, database_url: str
) -> None:
    """Another transaction holds expired nonces in the opposite order: no deadlock, no wait.

    It locks the later of two expired rows, the request's clean-up takes the
    earlier one and waits for the later; then the other transaction asks for
    the earlier one. Before the fix PostgreSQL broke that cycle by failing
    the request (500); now the clean-up skips rows locked elsewhere.
    """
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite serialises writers)")
    past = datetime.now(UTC) - timedelta(hours=1)
    async with station.db.session() as session:
        await session.execute(
            insert(NonceRow),
            [
                {"agent_id": agent.agent_id, "nonce": "a-first", "expires_at": past},
                {"agent_id": agent.agent_id, "nonce": "z-last", "expires_at": past},
            ],
        )
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    other = await asyncpg.connect(dsn)
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute("SET deadlock_timeout = '5s'")  # the request's check comes first
        await other.execute(
            "SELECT 1 FROM signature_nonces WHERE agent_id = $1 AND nonce = 'z-last' FOR UPDATE",
            agent.agent_id,
        )
        async with httpx.AsyncClient(
            base_url=base_url(station), auth=agent.signer(), timeout=30
        ) as client:
            request = asyncio.create_task(client.get("/v1/agents/me"))
            await asyncio.sleep(0.5)  # the clean-up is under way (or done)
            locked = asyncio.create_task(
                other.execute(
                    "SELECT 1 FROM signature_nonces"
                    " WHERE agent_id = $1 AND nonce = 'a-first' FOR UPDATE",
                    agent.agent_id,
                )
            )
            response = await request
        await asyncio.wait_for(locked, 10)
        await tx.rollback()
    finally:
        await other.close()

    assert response.status_code == 200, response.text
