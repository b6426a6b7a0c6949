"""The OCPP central system: the websocket listener and the commands the services send.

``ws://HOST:PORT/ocpp/{charge_point_id}`` with subprotocol ``ocpp2.1``,
``ocpp2.0.1`` or ``ocpp1.6`` (the newest one both sides speak). A charge
point offering none of them, once authenticated, gets the handshake completed
without ``Sec-WebSocket-Protocol`` and the connection closed at once (1002), as
OCPP-J describes. Security (OCPP security profiles):

* 1 / 2 — HTTP Basic with the charge point's password, checked against its
  scrypt hash; over TLS when ``ocpp_tls_cert``/``ocpp_tls_key`` are set.
* 3 — mutual TLS when ``ocpp_tls_ca`` is set too: a client certificate whose
  common name is the charge point id stands in for the password.

Who gets in, and how failed logins are throttled, is `station.ocpp.auth`: an
unknown id and a wrong password get the same 401 after the same work (never
404: ids cannot be enumerated). WebSocket compression (RFC 7692
permessage-deflate) is negotiated when offered, without context takeover
either way (`DEFLATE`): no zlib stream outlives a message, so an idle
connection holds none (websockets' default keeps ~33 KiB per connection);
``ocpp_max_frame_bytes`` bounds a message's inflated size. A second connection under an id that is
connected replaces the first only once it has authenticated; a failed
attempt never touches the first.

With several nodes on one PostgreSQL (`station.cluster`), ``ownership`` takes
the charge point's lease once a connection is authenticated (over any other
node's: the newest authenticated connection wins) and gives it back when the
connection ends; a connection whose lease another node took is closed
(`drop`), and only the holder records the charge point as disconnected.

The listener registers each connection in `station.ocpp.connections.Connections`,
which implements `station.services.ports.ChargePointCommands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from station.domain.events import OcppVersion
from station.logs import get_logger
from station.metrics import StationMetrics
from station.ocpp.auth import Authenticator, Outcome, client_address
from station.ocpp.connection import OcppConnection
from station.ocpp.connections import Connections
from station.ocpp.frame_log import FrameLog
from station.ocpp.handshakes import HandshakeGuard, pending_bound
from station.ocpp.ports import ChargingEvents
from station.ocpp.v16 import V16Connection
from station.ocpp.v21 import V21Connection
from station.ocpp.v201 import V201Connection
from station.settings import Settings
from station.store.db import Database

_log = get_logger(__name__)
PREFIX = "/ocpp/"
SUBPROTOCOLS = [Subprotocol(v.value) for v in (OcppVersion.V21, OcppVersion.V201, OcppVersion.V16)]
# Connections recorded (charge_point_connected) at once.
_ADMISSIONS = 256
_ADAPTERS: dict[str, type[OcppConnection]] = {
    OcppVersion.V16: V16Connection,
    OcppVersion.V201: V201Connection,
    OcppVersion.V21: V21Connection,
}
# Idle charge points hold no zlib stream: each message is deflated and inflated on its own.
# Window and memory level are websockets' own defaults.
DEFLATE = ServerPerMessageDeflateFactory(
    server_no_context_takeover=True,
    client_no_context_takeover=True,
    server_max_window_bits=12,
    client_max_window_bits=12,
    compress_settings={"memLevel": 5},
)


class Ownership(Protocol):
    """Who holds a charge point across nodes (`station.cluster.node.ClusterNode`)."""

    async def acquire(self, charge_point_id: str, ocpp_version: str) -> int:
        """Take the charge point's lease for this node; the connection's epoch."""
        ...

    async def release(self, charge_point_id: str, epoch: int) -> bool:
        """Give it back if that connection still holds it; True if it did."""
        ...


class CentralSystem:
    """The OCPP listener: authenticates, adapts each connection, registers it."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        events: ChargingEvents,
        connections: Connections,
        *,
        frames: FrameLog | None = None,
        ownership: Ownership | None = None,
        metrics: StationMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.events = events
        self.frames = frames
        self.port: int | None = None
        self.auth = Authenticator(settings, db, metrics=metrics)
        self._trusted_proxies = settings.trusted_networks
        self.handshakes = HandshakeGuard(
            pending_bound(settings.ocpp_max_pending_handshakes),
            settings.ocpp_accept_log_interval_s,
            settings.ocpp_open_timeout_s,
            metrics=metrics,
        )
        self.connections = connections
        self._admissions = asyncio.Semaphore(_ADMISSIONS)
        self._stopping = asyncio.Event()
        self.ownership = ownership

    # --- listening ---------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.ocpp_tls_cert is None or s.ocpp_tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(s.ocpp_tls_cert, s.ocpp_tls_key)
        if s.ocpp_tls_ca is not None:
            context.load_verify_locations(s.ocpp_tls_ca)
            context.verify_mode = ssl.CERT_OPTIONAL  # profile 3 by certificate, else Basic
        return context

    def stop(self) -> None:
        """Close the listener and every connection (1001 going away). Idempotent."""
        self._stopping.set()

    async def run(self, listening: asyncio.Event | None = None) -> None:
        """Serve until `stop()` or cancelled; sets ``port`` and then ``listening``.

        After `stop()`, the listener closes, each connection is closed with 1001
        (going away) and `run()` returns once their handlers have finished
        (their last messages answered and stored). Safe to cancel.
        """
        try:
            await self._serve(listening)
        finally:
            self.auth.close()

    async def _serve(self, listening: asyncio.Event | None) -> None:
        context = self.ssl_context()
        tls: dict[str, Any] = {}
        if context is not None:
            tls = {"ssl": context, "ssl_handshake_timeout": self.settings.ocpp_open_timeout_s}
        async with serve(
            self._handler,
            self.settings.ocpp_host,
            self.settings.ocpp_port,
            subprotocols=SUBPROTOCOLS,
            select_subprotocol=self._select_subprotocol,
            process_request=self._process_request,
            max_size=self.settings.ocpp_max_frame_bytes,
            compression=None,
            extensions=[DEFLATE] if self.settings.ocpp_compression else None,
            # The request's own deadline is the guard's; this one bounds the whole handshake.
            open_timeout=self.settings.ocpp_open_timeout_s + self.settings.ocpp_auth_wait_s,
            ping_interval=self.settings.ocpp_ping_interval_s,
            ping_timeout=self.settings.ocpp_ping_timeout_s,
            create_connection=self.handshakes.connection_class(),
            server_header=None,
            **tls,
        ) as server:
            with self.handshakes.watching(list(server.sockets)):
                await self._listen(server, listening)

    async def _listen(self, server: Server, listening: asyncio.Event | None) -> None:
        self.port = _port_of(server)
        _log.info("ocpp.listening", host=self.settings.ocpp_host, port=self.port)
        if listening is not None:
            listening.set()
        await self._stopping.wait()
        _log.info("ocpp.closing", connections=self.connections.count())
        # Leaving serve()'s block closes the listener and the connections (1001) and
        # awaits their handlers.

    def _select_subprotocol(
        self, _connection: ServerConnection, offered: Any
    ) -> Subprotocol | None:
        for protocol in SUBPROTOCOLS:
            if protocol in offered:
                return protocol
        return None

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        peer = str(connection.remote_address[0]) if connection.remote_address else "?"
        forwarded = ", ".join(request.headers.get_all("X-Forwarded-For"))
        peer = client_address(peer, forwarded, self._trusted_proxies)
        cp_id = _charge_point_id(request)
        if cp_id is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Use /ocpp/{charge_point_id}\n")
        verdict = await self.auth.authenticate(
            cp_id,
            peer,
            request.headers,
            certificate_matches=self._certificate_matches(connection, cp_id),
        )
        log = _log.bind(charge_point_id=cp_id[:64], peer=peer)
        if verdict.outcome is Outcome.THROTTLED:
            log.warning("ocpp.auth_rate_limited")
            response = connection.respond(
                HTTPStatus.TOO_MANY_REQUESTS, "Too many failed attempts\n"
            )
            response.headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_after_s)))
            return response
        if verdict.outcome is Outcome.UNAVAILABLE:
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Try again later\n")
            response.headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_after_s)))
            return response
        if verdict.outcome is Outcome.UNAUTHORIZED:
            log.warning("ocpp.auth_failed", displaces=cp_id in self.connections)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="chargepay", charset="UTF-8"'
            return response
        return None

    def _certificate_matches(self, connection: ServerConnection, cp_id: str) -> bool:
        if self.settings.ocpp_tls_ca is None:
            return False
        cert = connection.transport.get_extra_info("peercert") if connection.transport else None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName" and value == cp_id:
                    return True
        return False

    async def _handler(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        cp_id = _charge_point_id(websocket.request)
        assert cp_id is not None  # the handshake refused anything else
        # The handshake's headers (~3 KiB) are not read again; an idle connection should
        # not hold them for days. Cleared in place: websockets' request parser keeps the
        # request, and takes a request of None for a handshake still to come.
        websocket.request.headers.clear()
        websocket.response = None
        log = _log.bind(charge_point_id=cp_id)
        version = websocket.subprotocol
        if version is None:
            log.info("ocpp.refused", reason="no_subprotocol")
            await websocket.close(1002, "offer one of ocpp2.1, ocpp2.0.1, ocpp1.6")
            return
        connection = _ADAPTERS[version](
            cp_id,
            websocket,
            events=self.events,
            frames=self.frames,
            call_timeout_s=self.settings.ocpp_call_timeout_s,
            heartbeat_interval_s=self.settings.ocpp_heartbeat_interval_s,
            limits=self.connections.limits,
        )
        previous = self.connections.add(cp_id, connection)
        if previous is not None:
            log.warning("ocpp.connection_replaced")
            await previous.websocket.close(1000, "replaced by a new authenticated connection")
        log.info("ocpp.connected", ocpp_version=version, peer=str(websocket.remote_address))
        epoch: int | None = None
        try:
            # In a reconnect storm the connects queue here, not in the database pool.
            async with self._admissions:
                if self.ownership is not None:
                    epoch = await self.ownership.acquire(cp_id, version)
                    self.connections.set_epoch(cp_id, connection, epoch)
                await self.events.charge_point_connected(cp_id, version)
            await connection.serve()
        finally:
            self.connections.remove(cp_id, connection)
            task = asyncio.current_task()
            held = await self._release(cp_id, epoch)
            if cp_id not in self.connections and not (task and task.cancelling()):
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        if held:
                            await self.events.charge_point_disconnected(cp_id)
                        else:  # another node holds it now: its record is that node's
                            await self.events.charge_point_moved(cp_id)
            log.info("ocpp.disconnected", code=websocket.close_code, reason=websocket.close_reason)

    async def _release(self, cp_id: str, epoch: int | None) -> bool:
        """Give the lease back; False when another connection (on any node) holds it."""
        if self.ownership is None or epoch is None:
            return True
        try:
            async with asyncio.timeout(5):
                return await self.ownership.release(cp_id, epoch)
        except Exception as exc:
            _log.warning("ocpp.lease_not_released", charge_point_id=cp_id, error=repr(exc))
            return True  # it expires; this node's record says what it saw


def _charge_point_id(request: Request) -> str | None:
    """The id in ``/ocpp/{charge_point_id}`` (percent-decoded), or None for another path."""
    path = request.path.split("?", 1)[0]
    if not path.startswith(PREFIX) or not path[len(PREFIX) :].strip("/"):
        return None
    return unquote(path[len(PREFIX) :].strip("/"))


def _port_of(server: Server) -> int:
    return int(next(iter(server.sockets)).getsockname()[1])
