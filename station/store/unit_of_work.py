"""The SQLAlchemy adapter of the unit-of-work port (`station.services.unit_of_work`).

`SqlUnitsOfWork(db)` is the factory the composition root hands to the
services; each unit is one `Database.session()` (or `reader()`), so SQLite
takes its write lock up front and PostgreSQL locks what `lock=True` reads.

`SqlUnitOfWork.bound(session)` lends an open `AsyncSession` to a converted
service called from code that still holds one (the unit then neither commits
nor rolls back: its owner does). It is a bridge while services move onto the
port; new code asks the factory.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Self

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from station.store.constraints import translate
from station.store.db import Database
from station.store.repositories.agents import SqlAgents
from station.store.repositories.audit import SqlAuditLog
from station.store.repositories.charge_points import SqlChargePoints
from station.store.repositories.negotiations import SqlNegotiations, SqlOffers
from station.store.repositories.nonces import SqlNonces
from station.store.repositories.pricing import SqlPricing
from station.store.repositories.reports import SqlReports
from station.store.repositories.sessions import SqlSessions
from station.store.repositories.spend import SqlSpendLedger
from station.store.repositories.switches import SqlSwitches

# What the database side raises that the port translates (the rest passes as it is).
_FOREIGN = (DBAPIError, PoolTimeout, OSError)


class SqlUnitOfWork:
    agents: SqlAgents
    audit: SqlAuditLog
    sessions: SqlSessions
    switches: SqlSwitches
    spend: SqlSpendLedger
    nonces: SqlNonces
    negotiations: SqlNegotiations
    offers: SqlOffers
    charge_points: SqlChargePoints
    pricing: SqlPricing
    reports: SqlReports

    def __init__(self, db: Database | None, *, read_only: bool = False) -> None:
        self._db = db
        self._read_only = read_only
        self._unit: AbstractAsyncContextManager[AsyncSession] | None = None
        self._session: AsyncSession | None = None

    @classmethod
    def bound(cls, session: AsyncSession) -> SqlUnitOfWork:
        """A unit on a session someone else opened (and commits); usable without `async with`."""
        uow = cls(None)
        uow._attach(session)
        return uow

    @property
    def session(self) -> AsyncSession:
        """The underlying session, for adapters in station.store only."""
        if self._session is None:
            raise RuntimeError("the unit of work is not open (use `async with`)")
        return self._session

    @property
    def bind(self) -> object:
        """The session's engine, so that `station.metrics.metrics_for(uow)` finds the
        station's metrics (until the composition root hands metrics to the services)."""
        return self.session.bind

    def _attach(self, session: AsyncSession) -> None:
        self._session = session
        self.agents = SqlAgents(session)
        self.audit = SqlAuditLog(session)
        self.sessions = SqlSessions(session)
        self.switches = SqlSwitches(session)
        self.spend = SqlSpendLedger(session)
        self.nonces = SqlNonces(session)
        self.negotiations = SqlNegotiations(session)
        self.offers = SqlOffers(session)
        self.charge_points = SqlChargePoints(session)
        self.pricing = SqlPricing(session)
        self.reports = SqlReports(session)

    async def __aenter__(self) -> Self:
        if self._db is None:  # bound: the owner already opened it
            return self
        if self._unit is not None:
            raise RuntimeError("a unit of work is entered once")
        self._unit = self._db.reader() if self._read_only else self._db.session()
        try:
            self._attach(await self._unit.__aenter__())
        except _FOREIGN as exc:  # could not begin (connect, BEGIN IMMEDIATE)
            raise (translate(exc) or exc) from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._unit is None:
            return
        try:
            await self._unit.__aexit__(exc_type, exc, tb)  # commits, or rolls back on exc
        except _FOREIGN as failure:  # the commit (or the rollback) failed
            raise (translate(failure) or failure) from failure
        if isinstance(exc, _FOREIGN):
            mapped = translate(exc)
            if mapped is not None:
                raise mapped from exc


class SqlUnitsOfWork:
    """The factory: a writing unit per call, a read-only one per `reader()`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db)

    def reader(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, read_only=True)
