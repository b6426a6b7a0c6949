"""Opening handshakes on the OCPP port: a bound on half-open ones, and accept errors counted.

A connection must send its HTTP request within ``ocpp_open_timeout_s`` of
the accept (TLS included), or it is closed (swept every second). Once the
request is in, the handshake may wait ``ocpp_auth_wait_s`` more for its
password check: in a reconnect storm the checks queue, and cutting a charge
point off there would only send it into its back-off to queue again. On
top of that, `HandshakeGuard` keeps the connections that have not yet sent a
complete HTTP request (half-open, slowloris) under a bound: a quarter of the
process's open-file limit, at most ``ocpp_max_pending_handshakes`` (over TLS,
from the end of the TLS handshake; before it ``ocpp_open_timeout_s`` applies). A new
connection past the bound closes the oldest of them that has been silent for
``GRACE_S``: a charge point sends its request at once, so it is never among
them for long, even in a burst of reconnections; a connection that has sent
its request (waiting for its password check, say) is never shed.

When ``accept()`` fails for want of file descriptors (EMFILE, ENFILE, …),
asyncio stops accepting for a second and tries again (its own back-off). The
guard then sheds half of the half-open connections silent for ``GRACE_S``,
to make room, and counts
the failures: one ``ocpp.accept_exhausted`` line per ``ocpp_accept_log_interval_s``
with the count, instead of asyncio's traceback per failure. Shed handshakes and
accept failures are counted on the station's metrics
(``chargepay_ocpp_handshakes_shed_total``, ``chargepay_accept_errors_total{port="ocpp"}``).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection

from station.logs import get_logger
from station.metrics import StationMetrics

_log = get_logger(__name__)
_ACCEPT_EXHAUSTED = "socket.accept() out of system resource"
# A connection silent for less than this is never shed: its request may be unread yet.
GRACE_S = 1.0
_SWEEP_S = 1.0


def pending_bound(configured: int) -> int:
    """The bound on half-open handshakes: the setting, or a quarter of RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft // 4))


class HandshakeGuard:
    """Tracks half-open connections and the listener's accept errors (one per listener)."""

    def __init__(
        self,
        max_pending: int,
        log_interval_s: float,
        request_timeout_s: float,
        *,
        metrics: StationMetrics | None = None,
    ) -> None:
        self.max_pending = max_pending
        self.request_timeout_s = request_timeout_s
        self.log_interval_s = log_interval_s
        self.shed = 0
        self.accept_errors = 0
        # The station's own (its /metrics); None in bare use.
        self.metrics = metrics
        self._pending: dict[ServerConnection, float] = {}  # -> opened at (insertion order)
        self._unlogged = 0
        self._reason: str | None = None
        self._flush: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._sockets: set[int] = set()

    # --- half-open connections ---------------------------------------------------------

    def opened(self, connection: ServerConnection) -> None:
        self._pending[connection] = time.monotonic()
        if len(self._pending) > self.max_pending:
            self._shed(len(self._pending) - self.max_pending, older_than=GRACE_S)

    def closed(self, connection: ServerConnection) -> None:
        self._pending.pop(connection, None)

    def sweep(self) -> None:
        """Close every connection that has not sent its request within the deadline."""
        self._shed(len(self._pending), older_than=self.request_timeout_s)

    def _half_open(self, older_than: float, count: int) -> list[ServerConnection]:
        """Up to ``count`` of the oldest half-open connections older than ``older_than``.

        Scans from the oldest and stops at the first younger one, dropping on the
        way those that have sent their request: no copy of the whole table per
        connection in a burst (that was quadratic in a reconnect storm).
        """
        horizon = time.monotonic() - older_than
        found: list[ServerConnection] = []
        done: list[ServerConnection] = []
        for connection, opened in self._pending.items():
            if connection.request is not None:  # it sent its request: no longer half-open
                done.append(connection)
            elif opened <= horizon and len(found) < count:
                found.append(connection)
            else:
                break  # the rest are younger, or enough were found
        for connection in done:
            del self._pending[connection]
        return found

    def _shed(self, count: int, older_than: float = 0.0) -> None:
        for connection in self._half_open(older_than, count):
            del self._pending[connection]
            connection.transport.abort()
            self.shed += 1
            if self.metrics is not None:
                self.metrics.ocpp_handshakes_shed.inc()

    def connection_class(self) -> type[ServerConnection]:
        """A `ServerConnection` that reports to this guard (for ``serve(create_connection=)``)."""
        guard = self

        class GuardedConnection(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                guard.opened(self)

            def connection_lost(self, exc: Exception | None) -> None:
                guard.closed(self)
                super().connection_lost(exc)

        return GuardedConnection

    # --- accept errors -----------------------------------------------------------------

    @contextmanager
    def watching(self, sockets: list[Any]) -> Iterator[None]:
        """Handle the loop's accept errors for these listening sockets while inside."""
        loop = asyncio.get_running_loop()
        self._sockets = {s.fileno() for s in sockets}
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            sock = context.get("socket")
            ours = sock is not None and sock.fileno() in self._sockets
            if context.get("message") == _ACCEPT_EXHAUSTED and ours:
                self.accept_failed(loop, context.get("exception"))
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        def tick() -> None:
            self.sweep()
            self._sweeper = loop.call_later(_SWEEP_S, tick)

        loop.set_exception_handler(handler)
        self._sweeper = loop.call_later(_SWEEP_S, tick)
        try:
            yield
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
            if loop.get_exception_handler() is handler:
                loop.set_exception_handler(previous)
            if self._flush is not None:
                self._flush.cancel()
            self._log_unlogged()

    def accept_failed(self, loop: asyncio.AbstractEventLoop, exc: BaseException | None) -> None:
        self.accept_errors += 1
        if self.metrics is not None:
            self.metrics.accept_errors.labels(port="ocpp").inc()
        self._unlogged += 1
        self._shed(max(1, len(self._pending) // 2), older_than=GRACE_S)
        self._reason = str(exc) if exc is not None else "out of resources"
        if self._flush is None:
            self._flush = loop.call_later(self.log_interval_s, self._log_unlogged)

    def _log_unlogged(self) -> None:
        self._flush = None
        if self._unlogged:
            _log.warning(
                "ocpp.accept_exhausted",
                failures=self._unlogged,
                interval_s=self.log_interval_s,
                error=self._reason,
                shed_handshakes=self.shed,
            )
            self._unlogged = 0
