"""A Stripe-shaped HTTP proxy in front of localstripe: Stripe's idempotency rule, and faults.

localstripe ignores ``Idempotency-Key``. Stripe does not: a POST whose key was
seen before is answered with the stored response when its parameters are the
same, and refused with ``400 idempotency_error`` when they differ. This proxy
enforces that rule, so a replay with different parameters fails here as it
would against Stripe::

    async with StripeProxy(localstripe_url).running() as proxy:
        settings = Settings(stripe_api_base=proxy.url, ...)
        proxy.fault(Fault.HANG, operation="authorize", times=1)

Faults, each for the next `times` matching requests (``operation`` is
``authorize`` / ``capture`` / ``cancel`` / ``retrieve`` / ``list`` or None for
any):

- ``HANG``: the request is read and never answered (the client times out);
- ``REFUSE``: the connection is reset before anything is forwarded;
- ``ERROR_500``: a 500 answer, nothing forwarded (Stripe did nothing);
- ``FORWARD_THEN_DROP``: forwarded, stored as Stripe would, then the
  connection is reset — the outcome happened and the client never heard.

`on_forwarded` (when set) is called with the operation after a request was
forwarded and before its answer goes back: a campaign kills the station there
to land a crash while a call is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx

_MAX_BODY = 1_048_576


class Fault(enum.StrEnum):
    HANG = "hang"
    REFUSE = "refuse"
    ERROR_500 = "500"
    FORWARD_THEN_DROP = "forward_then_drop"


@dataclass
class _Armed:
    fault: Fault
    operation: str | None
    times: int


@dataclass(frozen=True)
class _Stored:
    fingerprint: tuple[str, str, tuple[tuple[str, str], ...]]
    status: int
    body: bytes


def operation_of(method: str, path: str) -> str:
    """The Stripe operation a request is, by its method and path."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts[:2] != ["v1", "payment_intents"]:
        return "other"
    if method == "GET":
        return "retrieve" if len(parts) == 3 and parts[2] != "search" else "list"
    if len(parts) == 2:
        return "authorize"
    return parts[3] if len(parts) >= 4 else "other"


class StripeProxy:
    def __init__(self, target_url: str) -> None:
        self._target = target_url.rstrip("/")
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._stored: dict[str, _Stored] = {}
        self._armed: list[_Armed] = []
        self._live: set[asyncio.StreamWriter] = set()
        self.on_forwarded: Callable[[str], None] | None = None
        self.is_up = True
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.idempotency_errors = 0
        self.replayed = 0

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def fault(self, fault: Fault, *, operation: str | None = None, times: int = 1) -> None:
        """Arm a fault for the next `times` requests of `operation` (None: any)."""
        self._armed.append(_Armed(fault, operation, times))

    def clear(self) -> None:
        self._armed.clear()

    def down(self) -> None:
        """Stripe unreachable: open connections reset, new ones refused, until `up()`."""
        self.is_up = False
        for writer in list(self._live):
            writer.transport.abort()

    def up(self) -> None:
        self.is_up = True

    def _take(self, operation: str) -> Fault | None:
        for armed in self._armed:
            if armed.operation in (None, operation):
                armed.times -= 1
                if armed.times <= 0:
                    self._armed.remove(armed)
                return armed.fault
        return None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StripeProxy]:
        self._client = httpx.AsyncClient(base_url=self._target, timeout=60)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
            for writer in list(self._live):
                writer.transport.abort()
            await self._server.wait_closed()
            await self._client.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_up:
            writer.transport.abort()
            return
        self._live.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._live.discard(writer)
            writer.transport.abort()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request on a keep-alive connection; False when the connection ends."""
        line = await reader.readline()
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY:
            return False
        body = await reader.readexactly(length) if length else b""
        operation = operation_of(method, target)
        self.requests[operation] += 1
        fault = self._take(operation) if operation != "other" else None
        if fault is not None:
            self.faults[f"{operation}:{fault}"] += 1
        if fault is Fault.REFUSE or not self.is_up:
            return False
        if fault is Fault.HANG:
            with contextlib.suppress(ConnectionError):
                await reader.read()  # until the client gives up and closes
            return False
        if fault is Fault.ERROR_500:
            await _respond(writer, 500, _error("api_error", "injected server error"))
            return True
        status, answer = await self._answer(method, target, headers, body, operation)
        if fault is Fault.FORWARD_THEN_DROP:
            return False
        await _respond(writer, status, answer)
        return True

    async def _answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes, operation: str
    ) -> tuple[int, bytes]:
        key = headers.get("idempotency-key") if method == "POST" else None
        fingerprint = (method, target.split("?", 1)[0], tuple(sorted(parse_qsl(body.decode()))))
        if key is not None and (stored := self._stored.get(key)) is not None:
            if stored.fingerprint != fingerprint:
                self.idempotency_errors += 1
                return 400, _error(
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters"
                    " they were first used with.",
                )
            self.replayed += 1
            return stored.status, stored.body
        assert self._client is not None
        forward = {
            k: v
            for k, v in headers.items()
            if k in ("authorization", "content-type", "stripe-version")
        }
        response = await self._client.request(method, target, content=body, headers=forward)
        if key is not None and response.status_code < 500:
            self._stored[key] = _Stored(fingerprint, response.status_code, response.content)
        if self.on_forwarded is not None:
            self.on_forwarded(operation)
        return response.status_code, response.content


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"error": {"type": kind, "message": message}}).encode()


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    head = (
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
