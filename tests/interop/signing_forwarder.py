"""A loopback HTTP forwarder that signs what it forwards as a registered agent.

mppx runs in Node and knows nothing of RFC 9421; the station's agents sign every
request. Node's fetch talks to this forwarder, which sends each request on to the
station through `vehicle.signing.SigningTransport` (a fresh nonce every time, so mppx's
retry after the 402 is signed afresh) and hands the answer back unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from vehicle.signing import AgentSigner, SigningTransport

_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


@contextlib.asynccontextmanager
async def signing_forwarder(target: str, signer: AgentSigner) -> AsyncIterator[str]:
    client = httpx.AsyncClient(base_url=target, transport=SigningTransport(signer), timeout=30)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = [tuple(line.split(":", 1)) for line in lines if ":" in line]
            pairs = [(k.strip(), v.strip()) for k, v in headers]
            length = int(next((v for k, v in pairs if k.lower() == "content-length"), "0"))
            body = await reader.readexactly(length) if length else b""
            response = await client.request(
                method,
                path,
                content=body,
                headers=[(k, v) for k, v in pairs if k.lower() not in _HOP],
            )
            out = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
            out += [
                f"{k}: {v}"
                for k, v in response.headers.multi_items()
                if k.lower() not in _HOP and k.lower() != "content-encoding"
            ]
            out += [f"content-length: {len(response.content)}", "connection: close", "", ""]
            writer.write("\r\n".join(out).encode("latin-1") + response.content)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()
        await client.aclose()
