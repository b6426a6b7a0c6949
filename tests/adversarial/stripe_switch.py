"""A TCP relay in front of localstripe that can be switched off: Stripe down, then back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class StripeSwitch:
    """Relays 127.0.0.1:<port> to the sandbox while up; resets every connection while down."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._host, self._port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        self.is_up = True
        self.refused = 0
        self.delay_s = 0.0  # added before each request reaches the sandbox (a slow Stripe)
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.WriteTransport] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def down(self) -> None:
        """Stripe is unreachable: open connections are reset, new ones refused."""
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
        up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        self._live.update((writer.transport, up_writer.transport))

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, slow: bool = False
        ) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if slow and self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()
            self._live.discard(dst.transport)

        await asyncio.gather(pipe(reader, up_writer, slow=True), pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StripeSwitch]:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self.down()
            self._server.close()
            await self._server.wait_closed()
