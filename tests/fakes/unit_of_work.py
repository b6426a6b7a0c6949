"""An in-memory unit of work with the SQL adapter's semantics (its contract: tests/store).

- A writing unit works on a copy of the committed tables and swaps it in on
  a clean exit; an exception drops it (rollback). Writing units run one at a
  time (an `asyncio.Lock`), as SQLite's BEGIN IMMEDIATE makes them.
- A reader sees the committed state as of its start; what it changes is dropped.
- Records are frozen values, so a copied table shares them safely.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

from tests.fakes.repositories import (
    FakeAgents,
    FakeAuditLog,
    FakeChargePoints,
    FakeNegotiations,
    FakeNonces,
    FakeOffers,
    FakePricing,
    FakeReports,
    FakeSessions,
    FakeSpendLedger,
    FakeSwitches,
    Tables,
)


class FakeUnitOfWork:
    agents: FakeAgents
    audit: FakeAuditLog
    sessions: FakeSessions
    switches: FakeSwitches
    spend: FakeSpendLedger
    nonces: FakeNonces
    negotiations: FakeNegotiations
    offers: FakeOffers
    charge_points: FakeChargePoints
    pricing: FakePricing
    reports: FakeReports

    def __init__(self, store: FakeStore, *, read_only: bool) -> None:
        self._store = store
        self._read_only = read_only
        self._tables: Tables = {}
        self._entered = False
        self.committed = False

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a unit of work is entered once")
        self._entered = True
        if not self._read_only:
            await self._store.write_lock.acquire()
        self._tables = {name: dict(rows) for name, rows in self._store.tables.items()}
        self.agents = FakeAgents(self._tables)
        self.audit = FakeAuditLog(self._tables)
        self.sessions = FakeSessions(self._tables)
        self.switches = FakeSwitches(self._tables)
        self.spend = FakeSpendLedger(self._tables)
        self.nonces = FakeNonces(self._tables)
        self.negotiations = FakeNegotiations(self._tables)
        self.offers = FakeOffers(self._tables)
        self.charge_points = FakeChargePoints(self._tables)
        self.pricing = FakePricing(self._tables)
        self.reports = FakeReports(self._tables)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._read_only:
            return
        try:
            if exc is None:
                self._store.tables = self._tables
                self._store.commits += 1
                self.committed = True
            else:
                self._store.rollbacks += 1
        finally:
            self._store.write_lock.release()


class FakeStore:
    """The committed state, and the factory of units over it (a `UnitOfWorkFactory`)."""

    def __init__(self) -> None:
        self.tables: Tables = {}
        self.write_lock = asyncio.Lock()
        self.commits = 0
        self.rollbacks = 0

    def __call__(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, read_only=False)

    def reader(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, read_only=True)

    def table(self, name: str) -> dict[Any, Any]:
        """The committed rows of a table (for a test's arrange and assert)."""
        return self.tables.setdefault(name, {})
