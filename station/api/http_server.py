"""The HTTP listener's defences against slow and idle peers (issue 15 item 4).

uvicorn times out an idle keep-alive connection only once a first response
went out, and never a request head that trickles in: a slowloris peer
(one header byte every few seconds) or a socket that connects and says
nothing kept its file descriptor forever. `protocol_class` makes uvicorn's
h11 protocol give every request head ``header_timeout_s`` — from the
connection's start and again after each response — and closes the
connection when it is not complete by then.

The protocol also records each live connection, so the application can cut
one it has given up on (`abort`: an event stream whose client takes no data,
see `station.api.sessions`). ``transport.close()`` would wait for the unread
bytes to drain, forever for a peer that never reads.

`AcceptErrors` is the event loop's exception handler for what asyncio's
accept loop reports when the process is out of file descriptors (EMFILE):
asyncio already pauses that listener for a second, but logged each pause
with a traceback; here it is one warning per interval with a count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from station.logs import get_logger
from station.metrics import StationMetrics

_log = get_logger(__name__)
Address = tuple[str, int | None] | None
_LIVE: dict[tuple[Address, Address], H11Protocol] = {}
ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"


def protocol_class(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for every request head."""

    class StationH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            _LIVE[(self.server, self.client)] = self
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if _LIVE.get((self.server, self.client)) is self:
                del _LIVE[(self.server, self.client)]
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._waiting_for_head():
                return
            self._cancel_head_timer()

        def handle_websocket_upgrade(self, event: Any) -> None:
            # The connection becomes uvicorn's WebSocket protocol's: no head to wait for.
            self._cancel_head_timer()
            super().handle_websocket_upgrade(event)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._waiting_for_head() and not self.transport.is_closing():
                self.transport.abort()

    return StationH11Protocol


def abort(scope: MutableMapping[str, Any]) -> bool:
    """Cut the connection a request came on at once (unsent data dropped)."""
    protocol = _LIVE.get((_address(scope.get("server")), _address(scope.get("client"))))
    if protocol is None:
        return False
    protocol.transport.abort()
    return True


def _address(value: Any) -> Address:
    return (str(value[0]), value[1]) if value else None


class AcceptErrors:
    """Loop exception handler: out-of-descriptor accept errors, once per interval."""

    def __init__(self, interval_s: float = 10.0, metrics: StationMetrics | None = None) -> None:
        self.interval_s = interval_s
        self.metrics = metrics  # chargepay_accept_errors_total{port="http"}
        self.total = 0
        self._pending = 0
        self._last_logged = float("-inf")
        self._previous: Any = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.get_exception_handler() is self:
            loop.set_exception_handler(self._previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_OUT_OF_RESOURCES:
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.total += 1
        if self.metrics is not None:
            self.metrics.accept_errors.labels(port="http").inc()
        self._pending += 1
        now = time.monotonic()
        if now - self._last_logged >= self.interval_s:
            exc = context.get("exception")
            _log.warning(
                "server.accept_out_of_resources",
                count=self._pending,
                total=self.total,
                error=str(exc) if exc else None,
                interval_s=self.interval_s,
            )
            self._pending = 0
            self._last_logged = now
