"""A database outage a test can switch on and off, on SQLite and on PostgreSQL.

PostgreSQL: the station reaches the server through a TCP proxy on loopback;
`down()` cuts every proxied connection and refuses new ones until `up()`.
SQLite: `down()` holds the write lock from another connection, and the
writer's busy timeout is shortened so that it gives up ("database is
locked") as it would after a long stall; `up()` releases the lock. Reads go on
on SQLite (WAL), as they would while another process holds the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest


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

    def __init__(self, url: str, proxy: PostgresProxy | None, sqlite_path: str | None) -> None:
        self.url = url
        self._proxy = proxy
        self._sqlite_path = sqlite_path
        self._holder: sqlite3.Connection | None = None

    def down(self) -> None:
        if self._proxy is not None:
            self._proxy.down()
            return
        assert self._sqlite_path is not None
        self._holder = sqlite3.connect(self._sqlite_path, isolation_level=None)
        self._holder.execute("BEGIN IMMEDIATE")

    def up(self) -> None:
        if self._proxy is not None:
            self._proxy.up()
        elif self._holder is not None:
            self._holder.execute("ROLLBACK")
            self._holder.close()
            self._holder = None


@contextlib.asynccontextmanager
async def database_outage(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Outage]:
    if database_url.startswith("sqlite"):
        # A writer waiting on the held lock gives up after half a second, not 30 s.
        monkeypatch.setattr("station.store.writer.SQLITE_BUSY_TIMEOUT_MS", 500)
        path = database_url.split("///", 1)[1]
        outage = Outage(database_url, None, path)
        try:
            yield outage
        finally:
            outage.up()
        return
    parts = urlsplit(database_url)
    proxy = PostgresProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    try:
        yield Outage(urlunsplit(parts._replace(netloc=netloc)), proxy, None)
    finally:
        await proxy.close()
