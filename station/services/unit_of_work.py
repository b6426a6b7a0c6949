"""The persistence port: a unit of work with one repository per aggregate (owned by the services).

A service asks a `UnitOfWorkFactory` for a unit and works inside it::

    async with units() as uow:              # a unit that may write
        agent = await uow.agents.get(agent_id, lock=True)
        await uow.agents.save(replace(agent, status="suspended"))
        await uow.audit.record(actor=..., action="agent.suspended", subject=agent_id)
    # committed here; an exception inside the block rolls everything back

    async with units.reader() as uow:       # read only: always rolled back
        agents = await uow.agents.list()

Repositories take and return domain values or the frozen records of
`station.services.repositories`, never ORM rows; services never import
`station.store`. Adapters: `station.store.unit_of_work` (SQLAlchemy, SQLite
and PostgreSQL) and `tests.fakes.unit_of_work` (in memory, the same contract:
`tests/store/test_unit_of_work_contract.py`).

Errors at this port (adapters translate what their database raises into
these, where it enters — never by matching message text):

- `AlreadyExists` (a `Conflict`, 409): an insert hit a unique key.
- `station.errors.NotFound` (404): a save or lock of a record that is not there.
- `station.errors.StoreUnavailable` (503): the store could not be reached or commit.

Adding a repository (see the board): its record and `Protocol` in a new
`station/services/repositories/<noun>.py`; an attribute on `UnitOfWork` below;
the SQL adapter in `station/store/repositories/<noun>.py` and its attribute in
`station.store.unit_of_work.SqlUnitOfWork`; the fake in
`tests/fakes/repositories.py` (or beside it) and its attribute in
`tests.fakes.unit_of_work.FakeUnitOfWork`; its contract tests in
`tests/store/test_unit_of_work_contract.py` (they run on all three).
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from station.errors import Conflict, NotFound, StoreUnavailable
from station.services.repositories.agents import AgentRepository
from station.services.repositories.audit import AuditLog
from station.services.repositories.charge_points import ChargePointRepository
from station.services.repositories.negotiations import NegotiationRepository, OfferRepository
from station.services.repositories.nonces import NonceRepository
from station.services.repositories.pricing import PricingRepository
from station.services.repositories.reports import Reports
from station.services.repositories.sessions import SessionRepository
from station.services.repositories.spend import SpendLedger
from station.services.repositories.switches import SwitchRepository

__all__ = [
    "AlreadyExists",
    "NotFound",
    "StoreUnavailable",
    "UnitOfWork",
    "UnitOfWorkFactory",
]


class AlreadyExists(Conflict):
    """An insert collided with a unique key (a primary key or a unique index).

    `key` names what collided in the port's words (e.g. ``"agent_id"``,
    ``"negotiation"``) when the adapter can tell, else ``None``.
    """

    title = "Already exists"

    def __init__(self, detail: str = "", *, key: str | None = None) -> None:
        super().__init__(detail)
        self.key = key


class UnitOfWork(Protocol):
    """One database transaction: commits on a clean exit, rolls back on an exception.

    On SQLite a writing unit holds the database's write lock from its start;
    on PostgreSQL, `lock=True` on a repository's read locks the row
    (``SELECT … FOR UPDATE``) until the unit ends. Either way a read-then-write
    inside one unit is serialised against other units.
    """

    # Read-only members, so that an adapter's own repository types satisfy them.
    @property
    def agents(self) -> AgentRepository: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def sessions(self) -> SessionRepository: ...

    @property
    def switches(self) -> SwitchRepository: ...

    @property
    def spend(self) -> SpendLedger: ...

    @property
    def nonces(self) -> NonceRepository: ...

    @property
    def negotiations(self) -> NegotiationRepository: ...

    @property
    def offers(self) -> OfferRepository: ...

    @property
    def charge_points(self) -> ChargePointRepository: ...

    @property
    def pricing(self) -> PricingRepository: ...

    @property
    def reports(self) -> Reports:
        """Read models (the dashboard's and /metrics' figures); use in a reader."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UnitOfWorkFactory(Protocol):
    """Where services get their units of work (built once, by the composition root)."""

    def __call__(self) -> UnitOfWork:
        """A unit that may write (commit on clean exit)."""
        ...

    def reader(self) -> UnitOfWork:
        """A read-only unit (never blocks writers; always rolled back)."""
        ...
