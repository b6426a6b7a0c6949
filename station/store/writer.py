"""Group commit: many connections' writes share one database transaction.

A charge point's reading must be durable before the station answers it, but
one commit per message would cap the station at the disk's fsync rate. The
`GroupCommitWriter` runs on one task: it takes every unit of work queued
since its last commit, runs them in one transaction, appends the rows they
staged (and any log rows) with one multi-row INSERT per table, commits, and
only then resolves each caller's future. A caller awaiting `submit()`
therefore hears back after its writes are durable.

On SQLite the batch runs on a synchronous connection in a worker thread, in
one hop; on PostgreSQL on the async engine (``run_sync``). Units are plain
synchronous Core code either way.

If the batch fails, it is rolled back and each unit is retried alone, so one
bad unit fails only its own caller. Units must therefore be free of side
effects outside the session (compute, write, return; apply caches after).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, create_engine, event, insert, update
from sqlalchemy.engine import Connection, Engine, make_url

from station.errors import StationUnavailable
from station.logs import get_logger
from station.store.db import Database, _sqlite_begin, _sqlite_pragmas

T = TypeVar("T")
_log = get_logger(__name__)


@dataclass
class Staged:
    """Rows a unit adds and rows it updates by key, run in bulk after every unit ran.

    Inserts go first (one multi-row INSERT per table), then updates (one
    executemany UPDATE per table and set of columns), in the order staged.
    """

    rows: dict[Table, list[dict[str, Any]]] = field(default_factory=dict)
    updates: dict[tuple[Table, str, tuple[str, ...]], list[dict[str, Any]]] = field(
        default_factory=dict
    )

    def add(self, table: Table, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)

    def update(self, table: Table, key_column: str, key: Any, values: dict[str, Any]) -> None:
        columns = tuple(sorted(values))
        params = {"k_": key, **{f"v_{c}": values[c] for c in columns}}
        self.updates.setdefault((table, key_column, columns), []).append(params)

    def flush(self, conn: Connection) -> None:
        for table, rows in self.rows.items():
            conn.execute(insert(table), rows)
        for (table, key_column, columns), params in self.updates.items():
            statement = (
                update(table)
                .where(table.c[key_column] == bindparam("k_", type_=table.c[key_column].type))
                .values({c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns})
            )
            conn.execute(statement, params)


# A unit of work: plain synchronous SQLAlchemy Core on the batch's connection.
Work = Callable[[Connection, Staged], Any]


@dataclass(eq=False)
class _Item:
    work: Work | None
    rows: list[tuple[Table, dict[str, Any]]]
    future: asyncio.Future[Any] | None


_STOP = _Item(None, [], None)  # queued by stop(): the loop ends after committing what is before it


class GroupCommitWriter:
    def __init__(self, db: Database, *, max_batch: int = 500, flush_timeout_s: float = 5.0) -> None:
        self.db = db
        self.max_batch = max_batch
        self.flush_timeout_s = flush_timeout_s
        self._sync_engine = _sqlite_sync_engine(db) if db.is_sqlite else None
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
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
        future.add_done_callback(_retrieved)  # a cancelled caller never reads it
        self._queue.put_nowait(_Item(work, [], future))
        return await future  # cancelling the caller cancels the future, not the unit

    def append(self, table: Table, row: dict[str, Any]) -> None:
        """Queue a row for the next batch without waiting for it (the frame log)."""
        self._queue.put_nowait(_Item(None, [(table, row)], None))

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
                items = [item for item in items if item is not _STOP]
                if stopped:  # rows appended after the stop (the frame log) go too
                    while not self._queue.empty():
                        items.append(self._queue.get_nowait())
                if items:
                    await self._uninterrupted(items)
        except asyncio.CancelledError:
            self._running = False
            rest = []
            while not self._queue.empty():
                rest.append(self._queue.get_nowait())
            if rest:
                with contextlib.suppress(TimeoutError):
                    await self._uninterrupted(rest, timeout_s=self.flush_timeout_s)
                _fail(rest)
            raise
        finally:
            self._running = False
            self.close()

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
            if len(items) == 1:
                future = items[0].future
                if future is not None and not future.done():
                    future.set_exception(exc)
                else:
                    _log.error("store.log_write_failed", error=type(exc).__name__)
                return
            _log.warning("store.batch_failed", units=len(items), error=type(exc).__name__)
            for item in items:
                await self._commit([item])
            return
        self.batches += 1
        self.units += len(items)
        for item, result in zip(items, results, strict=True):
            if item.future is not None and not item.future.done():
                item.future.set_result(result)

    async def _run_batch(self, items: list[_Item]) -> list[Any]:
        if self._sync_engine is not None:
            # SQLite: the whole batch in one hop to a thread (aiosqlite would
            # hop once per statement, each hop queued behind the event loop).
            return await asyncio.to_thread(self._run_sync, items)
        async with self.db.engine.begin() as conn:
            return await conn.run_sync(lambda sync: _run_items(sync, items))

    def _run_sync(self, items: list[_Item]) -> list[Any]:
        assert self._sync_engine is not None
        with self._sync_engine.connect() as conn:
            conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                return _run_items(conn, items)

    def close(self) -> None:
        if self._sync_engine is not None:
            self._sync_engine.dispose()


def _sqlite_sync_engine(db: Database) -> Engine:
    """The same SQLite file through the synchronous driver, with the same pragmas."""
    url = make_url(db.url).set(drivername="sqlite")
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _run_items(conn: Connection, items: list[_Item]) -> list[Any]:
    staged = Staged()
    results: list[Any] = []
    for item in items:
        for table, row in item.rows:
            staged.add(table, row)
        results.append(item.work(conn, staged) if item.work is not None else None)
    staged.flush(conn)
    return results


def _fail(items: list[_Item]) -> None:
    for item in items:
        if item.future is not None and not item.future.done():
            item.future.set_exception(StationUnavailable("the store writer stopped"))


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
