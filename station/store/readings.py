"""A reading's session, read and written inside the reading's own writer unit.

Billing runs inside the `GroupCommitWriter` unit that stores a transaction's
change (station.services.charging): the metering, the session's new billing
state, its anomalies and the frame log commit together, in the batch's one
transaction. `UnitSessions` is billing's view of that unit: it loads the
session a transaction's id token belongs to (locked for the batch on
PostgreSQL; on SQLite the batch holds the write lock) as the domain's
`Session`, and stages what a reading changes on it — one ``executemany`` per
batch for every session billed in it, with the frame log's rows.

Plain synchronous Core, no side effect outside the unit: a unit may run again
(a batch that failed on one unit's data is retried in halves).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Connection, Dialect

from station.domain.money import Money
from station.domain.session import (
    Metering,
    MppIntent,
    Payment,
    PaymentStatus,
    Session,
    SessionStatus,
)
from station.domain.session_actions import RecordAnomaly
from station.store.base import utcnow
from station.store.charging import AnomalyRow
from station.store.payments import SessionRow
from station.store.writer import Staged

_SESSIONS: Table = SessionRow.__table__  # type: ignore[assignment]
_ANOMALIES: Table = AnomalyRow.__table__  # type: ignore[assignment]
# What a reading changes on a session: one column set, so every session billed in a batch
# is written by one executemany.
_READING_COLUMNS = (
    "status", "cost", "stop_reason", "stop_requested_at", "updated_at", "energy_wh",
    "transaction_id", "transaction_ref", "meter_start_wh", "meter_stop_wh", "started_at",
    "stopped_at", "last_reading_at", "last_active_at",
)  # fmt: skip


class UnitSessions:
    """The sessions billing reads and writes in one writer unit (it implements
    `station.services.ports.ReadingSessions`)."""

    __slots__ = ("_conn", "_staged")

    def __init__(self, conn: Connection, staged: Staged) -> None:
        self._conn = conn
        self._staged = staged

    def by_id_token(self, id_token: str) -> Session | None:
        """The session of ``id_token``, locked until the batch commits (PostgreSQL)."""
        if self._conn.dialect.name != "sqlite":
            row = self._conn.execute(_BY_TOKEN, {"id_token": id_token}).first()
            return None if row is None else session_of(row)
        # SQLite (the batch runs on the event loop): the driver's own cursor, as the
        # batch's staged rows are written (Staged.flush); SQLAlchemy's execution context
        # is most of a one-row select's time otherwise.
        query = _sqlite_by_token(self._conn.dialect)
        cursor = self._conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(query.sql, (id_token,))
            values = cursor.fetchone()
        finally:
            cursor.close()
        return None if values is None else session_of(query.row(values))

    def save_reading(self, session: Session) -> None:
        """Stage what a reading changed on ``session`` (its metering, cost, status, stop)."""
        m = session.metering
        cost = session.cost.amount if session.cost is not None else Decimal(0)
        values = (
            session.status.value, cost, session.stop_reason, session.stop_requested_at,
            session.updated_at, m.energy_wh, m.transaction_id, m.transaction_ref,
            m.meter_start_wh, m.meter_stop_wh, m.started_at, m.stopped_at, m.last_reading_at,
            m.last_active_at,
        )  # fmt: skip
        self._staged.update(
            _SESSIONS,
            "session_id",
            session.session_id,
            dict(zip(_READING_COLUMNS, values, strict=True)),
        )

    def add_anomaly(self, charge_point_id: str, anomaly: RecordAnomaly) -> None:
        self._staged.add(
            _ANOMALIES,
            {
                "charge_point_id": charge_point_id,
                "transaction_id": anomaly.transaction_id,
                "kind": anomaly.kind,
                "detail": anomaly.detail,
                "timestamp": anomaly.at,
                "recorded_at": utcnow(),
            },
        )


class _Row:
    """A fetched row's values by column name (what `session_of` reads)."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True, slots=True)
class _Query:
    """A one-row select of ``sessions`` compiled once for SQLite, with the columns'
    result conversions (UTC datetimes, decimals, JSON) as SQLAlchemy would apply them."""

    sql: str
    columns: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def row(self, values: Any) -> _Row:
        return _Row(
            {
                name: value if process is None or value is None else process(value)
                for name, process, value in zip(self.columns, self.processors, values, strict=True)
            }
        )


_BY_TOKEN = (
    select(*_SESSIONS.c).where(_SESSIONS.c.id_token == bindparam("id_token")).with_for_update()
)
_sqlite_query: list[_Query] = []


def _sqlite_by_token(dialect: Dialect) -> _Query:
    if not _sqlite_query:
        compiled = _BY_TOKEN.compile(dialect=dialect)
        columns = tuple(c.key for c in _SESSIONS.c)
        processors = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in _SESSIONS.c
        )
        _sqlite_query.append(_Query(compiled.string, columns, processors))
    return _sqlite_query[0]


def session_of(row: Any) -> Session:
    """A stored session (a Core row of ``sessions``) as the domain's `Session`.

    Its settlement intent is not read: a reading's rules do not look at it, and
    `UnitSessions.save_reading` writes only what a reading changes.
    """
    currency = row.currency
    return Session(
        session_id=row.session_id,
        agent_id=row.agent_id,
        negotiation_id=row.negotiation_id,
        offer_id=row.offer_id,
        challenge_id=row.challenge_id,
        charge_point_id=row.charge_point_id,
        evse_id=row.evse_id,
        id_token=row.id_token,
        remote_start_id=row.remote_start_id,
        tariff_doc=row.tariff,
        cap=Money(row.cap, currency),
        status=SessionStatus(row.status),
        payment=Payment(
            intent=MppIntent(row.payment_intent),
            status=PaymentStatus(row.payment_status),
            source=row.payment_source,
            reference=row.payment_reference,
            payer_method=row.payer_method,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
        metering=Metering(
            energy_wh=row.energy_wh,
            transaction_id=row.transaction_id,
            transaction_ref=row.transaction_ref,
            meter_start_wh=row.meter_start_wh,
            meter_stop_wh=row.meter_stop_wh,
            started_at=row.started_at,
            stopped_at=row.stopped_at,
            last_reading_at=row.last_reading_at,
            last_active_at=row.last_active_at,
        ),
        cost=Money(row.cost, currency),
        captured=None if row.captured is None else Money(row.captured, currency),
        refunded=None if row.refunded is None else Money(row.refunded, currency),
        detail=row.detail,
        stop_reason=row.stop_reason,
        stop_requested_at=row.stop_requested_at,
    )
