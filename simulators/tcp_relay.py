"""A TCP relay that can be switched off: a database (or any server) going away, then back.

async with TcpRelay("127.0.0.1", 5432).running() as relay:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{relay.port}/db"
    relay.down()   # every open connection is reset, new ones are refused
    relay.up()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class TcpRelay:
    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self.is_up = True
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.WriteTransport] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def down(self) -> None:
        self.is_up = False
        for transport in list(self._live):
            transport.abort()
        self._live.clear()

    def up(self) -> None:
        self.is_up = True

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_up:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._live.update(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._live.difference_update(pair)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TcpRelay]:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self.down()
            self._server.close()
            await self._server.wait_closed()
