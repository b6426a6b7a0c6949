"""Group commit: many connections' writes share one database transaction.

A charge point's reading must be durable before the station answers it, but
one commit per message would cap the station at the disk's fsync rate. The
`GroupCommitWriter` runs on one task: it takes every unit of work queued
since its last commit, runs them in one transaction, writes the rows they
staged (and any log rows) with one ``executemany`` per table, commits, and
only then resolves each caller's future. A caller awaiting `submit()`
therefore hears back after its writes are durable.

Units are plain synchronous Core code. The rows they stage (and the frame
log's appended rows) are written with the driver's ``executemany`` through
statements compiled once (`DriverStatement`): they are most of what a batch
writes. On PostgreSQL the batch runs on the async engine (``run_sync``). On
SQLite it runs on a synchronous connection, on the event loop itself when the
write lock is free (a millisecond of C beats a thread hop and the GIL
hand-offs that follow) and in a worker thread when another connection holds
the lock; the WAL is checkpointed in a thread every `checkpoint_every`
batches, so no commit on the loop pays for a checkpoint's fsync.

One bad row never fails anyone else's batch. If a batch fails on its data (a
value the database refuses: a lone surrogate, a NUL on PostgreSQL, an integer
past its column; a constraint; a unit's own bug), it is rolled back and run
again in halves, and again, until each failing unit (or appended row) is
alone: everything else commits, only the bad unit's caller hears of it
(`StoreRefused`), and each refusal is logged (``store.unit_refused`` /
``store.row_refused``) and counted (``chargepay_store_refusals``). This costs
nothing until a batch fails. If the database itself is unavailable (connection
lost or refused, shut down, locked past the busy timeout), no part would
commit: every caller of the batch hears `StoreUnavailable` at once. Units must
therefore be free of side effects outside the session (compute, write,
return; apply caches after): they may run more than once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Table, bindparam, create_engine, event, insert, update
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.exc import OperationalError

from station.errors import StationUnavailable, StoreRefused, StoreUnavailable
from station.logs import get_logger
from station.store.db import SQLITE_BUSY_TIMEOUT_MS, Database, _sqlite_begin, _sqlite_pragmas

if TYPE_CHECKING:
    from station.metrics import StationMetrics

_log = get_logger(__name__)
# PostgreSQL error classes that say the database, not the data, failed: connection (08),
# rolled back by the server (40: deadlock, serialisation), resources (53), operator
# intervention (57: shut down, starting up), system (58).
_OUTAGE_SQLSTATES = frozenset({"08", "40", "53", "57", "58"})


@dataclass
class Staged:
    """Rows a unit adds and rows it updates by key, run in bulk after every unit ran.

    Inserts go first (one ``executemany`` per table and set of columns), then
    updates (one per table, key and set of columns), in the order staged. Rows
    are kept as value tuples in column order, ready for the driver.
    """

    rows: dict[tuple[Table, tuple[str, ...]], list[tuple[Any, ...]]] = field(default_factory=dict)
    updates: dict[tuple[Table, str, tuple[str, ...]], list[tuple[Any, ...]]] = field(
        default_factory=dict
    )

    def add(self, table: Table, row: dict[str, Any]) -> None:
        self.rows.setdefault((table, tuple(row)), []).append(tuple(row.values()))

    def add_values(self, table: Table, columns: tuple[str, ...], values: tuple[Any, ...]) -> None:
        """`add` for a row already in column order (the frame log: two per message)."""
        self.rows.setdefault((table, columns), []).append(values)

    def update(self, table: Table, key_column: str, key: Any, values: dict[str, Any]) -> None:
        group = self.updates.setdefault((table, key_column, tuple(values)), [])
        group.append((*values.values(), key))

    def flush(self, conn: Connection) -> None:
        # The driver's own cursor: SQLAlchemy's execution context per statement
        # is most of a batch's Python time otherwise.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for (table, columns), rows in self.rows.items():
                statement = _driver_insert(conn.dialect, table, columns)
                cursor.executemany(statement.sql, statement.convert(rows))
            for (table, key_column, columns), rows in self.updates.items():
                statement = _driver_update(conn.dialect, table, key_column, columns)
                cursor.executemany(statement.sql, statement.convert(rows))
        finally:
            cursor.close()


class JsonText(str):
    """JSON already encoded (a frame's payload): written to a JSON column as it is."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled once per dialect, run with the driver's own ``executemany``.

    The staged rows are the hot path (every frame, every sampled value): a
    SQLAlchemy ``execute`` would look the statement up in its cache and build
    every row's parameters anew. Here the SQL, the parameters' order and the
    bind processors (the column types' conversions: UTC datetimes, JSON,
    decimals) are worked out once, and a row is converted in place.
    """

    sql: str
    # Where each of the statement's parameters is in a staged row (None: same order).
    order: tuple[int, ...] | None
    # (position, conversion) of the parameters whose type converts values.
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]

    @classmethod
    def compile(
        cls, statement: Any, dialect: Dialect, names: tuple[str, ...], **kwargs: Any
    ) -> DriverStatement:
        """Compile ``statement``, whose rows will come as values in the order of ``names``."""
        compiled = statement.compile(dialect=dialect, **kwargs)
        if not compiled.positional:  # pragma: no cover - sqlite and asyncpg are positional
            raise TypeError(f"{dialect.name}: a positional paramstyle is needed")
        positions = tuple(compiled.positiontup)
        order = tuple(names.index(name) for name in positions)
        processors = []
        for position, name in enumerate(positions):
            sql_type = compiled.binds[name].type
            # The dialect's own implementation (SQLite's DATETIME text, asyncpg's native
            # Decimal), as SQLAlchemy's execute would use: not the generic type's.
            process = sql_type.dialect_impl(dialect).bind_processor(dialect)
            if isinstance(sql_type, JSON):
                process = _json_passthrough(process)
            if process is not None:
                processors.append((position, process))
        identity = order == tuple(range(len(order)))
        return cls(compiled.string, None if identity else order, tuple(processors))

    def convert(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        """Staged rows as the driver's parameters."""
        if self.order is None and not self.processors:
            return rows
        converted = []
        for row in rows:
            values = list(row) if self.order is None else [row[i] for i in self.order]
            for position, process in self.processors:
                value = values[position]
                if value is not None:
                    values[position] = process(value)
            converted.append(values)
        return converted


def _json_passthrough(process: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    def encode(value: Any) -> Any:
        if type(value) is JsonText:
            return str(value)
        return process(value) if process is not None else value

    return encode


_statements: dict[tuple[Any, ...], DriverStatement] = {}


def _driver_insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> DriverStatement:
    key = (type(dialect), "insert", table.name, columns)
    statement = _statements.get(key)
    if statement is None:
        # inline(): no RETURNING of the new ids (PostgreSQL would add one).
        statement = DriverStatement.compile(
            insert(table).inline(), dialect, columns, column_keys=list(columns)
        )
        _statements[key] = statement
    return statement


def _driver_update(
    dialect: Dialect, table: Table, key_column: str, columns: tuple[str, ...]
) -> DriverStatement:
    key = (type(dialect), "update", table.name, key_column, columns)
    statement = _statements.get(key)
    if statement is None:
        statement = DriverStatement.compile(
            update(table)
            .where(table.c[key_column] == bindparam("k_", type_=table.c[key_column].type))
            .values({c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns}),
            dialect,
            (*(f"v_{c}" for c in columns), "k_"),
        )
        _statements[key] = statement
    return statement


# A unit of work: plain synchronous SQLAlchemy Core on the batch's connection.
Work = Callable[[Connection, Staged], Any]


@dataclass(eq=False)
class _Item:
    work: Work | None
    rows: list[tuple[Table, tuple[str, ...], tuple[Any, ...]]]
    future: asyncio.Future[Any] | None


_STOP = _Item(None, [], None)  # queued by stop(): the loop ends after committing what is before it
_WAKE = _Item(None, [], None)  # queued by append(): rows are waiting


class GroupCommitWriter:
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 500,
        flush_timeout_s: float = 5.0,
        checkpoint_every: int = 100,
        metrics: StationMetrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.max_batch = max_batch
        self.flush_timeout_s = flush_timeout_s
        self.checkpoint_every = checkpoint_every
        self._checkpoint: asyncio.Task[None] | None = None
        self._checkpointed = 0
        self._sync_engine = _sqlite_sync_engine(db) if db.is_sqlite else None
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        # Appended rows wait here, not in the queue: one list append per frame.
        self._rows: list[tuple[Table, tuple[str, ...], tuple[Any, ...]]] = []
        self.batches = 0
        self._running = False
        self.units = 0

    async def submit(self, work: Work) -> Any:
        """Run ``work`` in the next batch; return its result once committed.

        Safe to cancel: the unit may still commit with its batch.
        """
        if not self._running:
            raise StationUnavailable("the store writer is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(work, [], future))
        return await future  # cancelling the caller cancels the future, not the unit

    def append(self, table: Table, row: dict[str, Any]) -> None:
        """Queue a row for the next batch without waiting for it."""
        self.append_values(table, tuple(row), tuple(row.values()))

    def append_values(
        self, table: Table, columns: tuple[str, ...], values: tuple[Any, ...]
    ) -> None:
        """`append` for a row already in column order (the frame log)."""
        if not self._rows:
            self._queue.put_nowait(_WAKE)
        self._rows.append((table, columns, values))

    def post(self, work: Work) -> None:
        """Queue a unit for the next batch without waiting for it (last-seen times)."""
        self._queue.put_nowait(_Item(work, [], None))

    def stop(self) -> None:
        """Take no new units; `run()` commits what is queued, then returns. Idempotent."""
        if self._running:
            self._running = False
            self._queue.put_nowait(_STOP)

    async def run(self) -> None:
        """The writer's loop; runs until `stop()` (then returns) or cancelled.

        After `stop()` every `submit` fails with StationUnavailable; the batch in
        flight and everything queued before the stop are committed, then
        `run()` returns.

        A batch that has begun is never interrupted (a transaction cut off
        mid-way can leave SQLite's write lock held): on cancellation it
        finishes first, then what is still queued is flushed in one more
        batch (given ``flush_timeout_s``, then failed). Any `submit` after that
        fails with StationUnavailable.
        """
        self._running = True
        try:
            stopped = False
            while not stopped:
                items = [await self._queue.get()]
                while not self._queue.empty() and len(items) < self.max_batch:
                    items.append(self._queue.get_nowait())
                stopped = any(item is _STOP for item in items)
                if stopped:  # rows appended after the stop (the frame log) go too
                    while not self._queue.empty():
                        items.append(self._queue.get_nowait())
                items = self._with_rows(items)
                if items:
                    await self._uninterrupted(items)
        except asyncio.CancelledError:
            self._running = False
            rest = []
            while not self._queue.empty():
                rest.append(self._queue.get_nowait())
            rest = self._with_rows(rest)
            if rest:
                with contextlib.suppress(TimeoutError):
                    await self._uninterrupted(rest, timeout_s=self.flush_timeout_s)
                _fail(rest)
            raise
        finally:
            self._running = False
            try:
                await self._finish_checkpoint()
            finally:
                self.close()

    def _with_rows(self, items: list[_Item]) -> list[_Item]:
        """The units among ``items``, and the rows appended so far as one more item."""
        units = [item for item in items if item.work is not None]
        if self._rows:
            units.append(_Item(None, self._rows, None))
            self._rows = []
        return units

    async def _uninterrupted(self, items: list[_Item], timeout_s: float | None = None) -> None:
        """Commit a batch; if cancelled meanwhile, let it finish, then re-raise."""
        commit = asyncio.create_task(self._commit(items))
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(commit)
        except (asyncio.CancelledError, TimeoutError):
            with contextlib.suppress(Exception):
                await commit  # owned here: always awaited
            raise

    async def _commit(self, items: list[_Item]) -> None:
        try:
            results = await self._run_batch(items)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_outage(exc):
                _log.error("store.batch_unavailable", units=len(items), error=type(exc).__name__)
                self._unavailable(items, exc)
            elif _alone(items):
                self._refuse(items[0], exc)
            else:
                _log.warning("store.batch_failed", units=len(items), error=type(exc).__name__)
                await self._isolate(items)
            return
        self._done(items, results)

    async def _isolate(self, items: list[_Item]) -> None:
        """Commit what can be of a batch that failed on its data, finding the bad parts.

        The batch runs again in halves (a failing half in halves again...) until
        each failing unit or appended row is alone; the rest commits, in order.
        One bad unit among n costs about 2·log2(n) batches, and only on failure.
        """
        for part in _halves(items):
            try:
                results = await self._run_batch(part)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_outage(exc):
                    self._unavailable(part, exc)
                elif _alone(part):
                    self._refuse(part[0], exc)
                else:
                    await self._isolate(part)
                continue
            self._done(part, results)

    def _done(self, items: list[_Item], results: list[Any]) -> None:
        self.batches += 1
        self.units += len(items)
        for item, result in zip(items, results, strict=True):
            if item.future is not None and not item.future.done():
                item.future.set_result(result)

    def _refuse(self, item: _Item, exc: Exception) -> None:
        """The database refused this unit (or appended row) alone: its caller hears it."""
        kind = "unit" if item.work is not None else "row"
        if self.metrics is not None:
            self.metrics.store_refusals.labels(kind=kind).inc()
        if item.work is None:
            table = item.rows[0][0].name if item.rows else None
            _log.error("store.row_refused", table=table, error=type(exc).__name__)
            return
        _log.error("store.unit_refused", error=type(exc).__name__, detail=str(exc)[:200])
        if item.future is not None and not item.future.done():
            refused = StoreRefused("a value cannot be stored as given")
            refused.__cause__ = exc
            _fail_future(item.future, refused)

    def _unavailable(self, items: list[_Item], exc: Exception) -> None:
        for item in items:
            if item.future is not None and not item.future.done():
                unavailable = StoreUnavailable("the database is unavailable")
                unavailable.__cause__ = exc
                _fail_future(item.future, unavailable)

    async def _run_batch(self, items: list[_Item]) -> list[Any]:
        if self._sync_engine is None:
            async with self.db.engine.begin() as conn:
                return await conn.run_sync(lambda sync: _run_items(sync, items))
        # SQLite. With the write lock free, the batch runs right here: it is
        # a millisecond or so of C, cheaper than a hop to a thread that then
        # trades the GIL with the event loop at every statement. When another
        # connection holds the lock, the batch waits for it in a thread,
        # never on the event loop.
        try:
            results = self._run_sync(items, wait=False)
        except _Busy:
            results = await asyncio.to_thread(self._run_sync, items, wait=True)
        self._maybe_checkpoint()
        return results

    def _run_sync(self, items: list[_Item], *, wait: bool) -> list[Any]:
        assert self._sync_engine is not None
        with self._sync_engine.connect() as conn:
            # On the driver's connection: a statement through SQLAlchemy would begin a transaction.
            raw: Any = conn.connection.dbapi_connection
            raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS if wait else 0}")
            try:
                with conn.execution_options(sqlite_immediate=True).begin():
                    return _run_items(conn, items)
            except OperationalError as exc:
                if not wait and "locked" in str(exc.orig):
                    raise _Busy from exc  # rolled back; units have no other effects
                raise

    def _maybe_checkpoint(self) -> None:
        """Every `checkpoint_every` batches, copy the WAL into the database in a thread.

        The writer's own connections never checkpoint (``wal_autocheckpoint=0``):
        a checkpoint writes the database file and fsyncs it, which must not
        happen on the event loop. PASSIVE: it never blocks a writer or a reader.
        """
        if self.batches - self._checkpointed < self.checkpoint_every:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._checkpointed = self.batches
        self._checkpoint = asyncio.create_task(asyncio.to_thread(self._run_checkpoint))
        self._checkpoint.add_done_callback(_checkpoint_done)

    def _run_checkpoint(self) -> None:
        assert self._sync_engine is not None
        with self._sync_engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    async def _finish_checkpoint(self) -> None:
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._checkpoint)

    def close(self) -> None:
        if self._sync_engine is not None:
            self._sync_engine.dispose()


class _Busy(Exception):
    """SQLite's write lock is held by another connection."""


def _checkpoint_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.warning("store.checkpoint_failed", error=type(task.exception()).__name__)


def _sqlite_sync_engine(db: Database) -> Engine:
    """The same SQLite file through the synchronous driver, with the same pragmas."""
    url = make_url(db.url).set(drivername="sqlite")
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "connect", _no_autocheckpoint)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _run_items(conn: Connection, items: list[_Item]) -> list[Any]:
    staged = Staged()
    results: list[Any] = []
    for item in items:
        for table, columns, values in item.rows:
            staged.add_values(table, columns, values)
        results.append(item.work(conn, staged) if item.work is not None else None)
    staged.flush(conn)
    return results


def _alone(items: list[_Item]) -> bool:
    """One unit, or one appended row: nothing left to split."""
    return len(items) == 1 and (items[0].work is not None or len(items[0].rows) <= 1)


def _halves(items: list[_Item]) -> list[list[_Item]]:
    if len(items) > 1:
        middle = len(items) // 2
        return [items[:middle], items[middle:]]
    rows = items[0].rows  # the batch's appended rows, one item: split the rows
    middle = len(rows) // 2
    return [[_Item(None, rows[:middle], None)], [_Item(None, rows[middle:], None)]]


def is_outage(exc: BaseException) -> bool:
    """Whether an error says the database is unavailable, rather than refusing the data.

    Connection errors (refused, lost, timed out), SQLite's operational errors
    (locked past the busy timeout, I/O), disconnects SQLAlchemy noticed, and
    PostgreSQL's connection, rollback, resource and shutdown classes. Anything
    else (integrity, data, encoding, overflow, a unit's bug) is the data's.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError | TimeoutError | StationUnavailable):
            return True
        if isinstance(current, sqlite3.OperationalError):
            return True
        if getattr(current, "connection_invalidated", False):
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in _OUTAGE_SQLSTATES:
            return True
        if type(current).__module__.startswith("asyncpg") and type(current).__name__ in (
            "InterfaceError",
            "ConnectionDoesNotExistError",
        ):
            return True  # asyncpg: "connection is closed"
        current = getattr(current, "orig", None) or current.__cause__
    return False


def _fail(items: list[_Item]) -> None:
    for item in items:
        if item.future is not None and not item.future.done():
            _fail_future(item.future, StationUnavailable("the store writer stopped"))


def _fail_future(future: asyncio.Future[Any], exc: BaseException) -> None:
    future.set_exception(exc)
    # Marked as read: a caller cancelled meanwhile never reads it (no "never retrieved"
    # warning); one still waiting gets it all the same.
    future.exception()
