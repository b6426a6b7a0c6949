"""A database outage or stall a test can switch on and off, on SQLite and on PostgreSQL.

PostgreSQL: the station reaches the server through a TCP proxy on loopback;
`down()` cuts every proxied connection and refuses new ones until `up()`.
`stall()` makes writes wait and lets reads go on until `resume()`: on
PostgreSQL another connection locks the tables in SHARE mode, on SQLite it
holds the write lock (WAL readers go on). On SQLite `down()` stalls and
shortens the writer's busy timeout, so that it gives up ("database is
locked") as it would after a long stall, until `up()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from station.store.db import SQLITE_BUSY_TIMEOUT_MS


class PostgresProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.available = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def down(self) -> None:
        self.available = False
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def up(self) -> None:
        self.available = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.available:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._links.discard(writer)
            writer.transport.abort()


class Outage:
    """``url`` for the station; `down()` and `up()` switch the outage."""

    def __init__(
        self,
        url: str,
        proxy: PostgresProxy | None,
        direct_url: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.url = url
        self._proxy = proxy
        self._direct_url = direct_url
        self._monkeypatch = monkeypatch
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: asyncpg.Connection | None = None

    async def down(self) -> None:
        if self._proxy is not None:
            self._proxy.down()
            return
        # A writer waiting on the held lock gives up after half a second, not 30 s.
        self._monkeypatch.setattr("station.store.writer.SQLITE_BUSY_TIMEOUT_MS", 500)
        await self.stall()

    async def up(self) -> None:
        if self._proxy is not None:
            self._proxy.up()
            return
        self._monkeypatch.setattr(
            "station.store.writer.SQLITE_BUSY_TIMEOUT_MS", SQLITE_BUSY_TIMEOUT_MS
        )
        await self.resume()

    async def stall(self) -> None:
        if self._proxy is not None:
            assert self._postgres is None
            self._postgres = await asyncpg.connect(self._direct_url)
            await self._postgres.execute("BEGIN")
            await self._postgres.execute(f"LOCK TABLE {', '.join(_WRITTEN)} IN SHARE MODE")
            return
        assert self._sqlite is None
        self._sqlite = sqlite3.connect(self._direct_url, isolation_level=None)
        self._sqlite.execute("BEGIN IMMEDIATE")

    async def resume(self) -> None:
        if self._postgres is not None:
            await self._postgres.execute("ROLLBACK")
            await self._postgres.close()
            self._postgres = None
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None


# What the group-commit writer writes.
_WRITTEN = ("transactions", "meter_samples", "anomalies", "ocpp_messages", "charge_points")


@contextlib.asynccontextmanager
async def database_outage(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Outage]:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        outage = Outage(database_url, None, path, monkeypatch)
        try:
            yield outage
        finally:
            await outage.resume()
        return
    parts = urlsplit(database_url)
    proxy = PostgresProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    direct = urlunsplit(parts._replace(scheme="postgresql"))
    outage = Outage(urlunsplit(parts._replace(netloc=netloc)), proxy, direct, monkeypatch)
    try:
        yield outage
    finally:
        await outage.resume()
        await proxy.close()
