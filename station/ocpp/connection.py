"""One charge point's connection: moves the bytes, owns its tasks, carries out what `rpc` decides.

`OcppConnection` is the base of the three version adapters. What a frame is,
which message ids the station's calls carry, which call is in flight and
until when, and how an error is spelt for the version are decided by
`station.ocpp.rpc.Endpoint` without I/O; this module carries the decisions
out. The ``ocpp`` library is used through its public API only: its message
and result dataclasses (``ocpp.vXX.call`` / ``call_result``), its ``Action``
enums, its JSON schemas (compiled here once per action, shared by every
connection) and its public key-case helpers. Nothing underscored: a test in
``tests/ocpp/test_rpc.py`` keeps it so.

* **Every CALL gets an answer.** A frame that is not JSON gets a CALLERROR
  ``FormatViolation`` (1.6: ``FormationViolation``) with message id ``-1``; a
  frame that is JSON but not an RPC frame gets ``RpcFrameworkError`` (1.6:
  ``ProtocolError``); an action unknown to the version ``NotImplemented``, a
  known one the station does not handle ``NotSupported``; a payload that
  breaks the schema the matching constraint error (descriptions cut to the
  255 characters 2.x allows). The connection carries on in every case.
* **Routing is a table per class**, built once from the `handles` marks
  (``routes``), not per connection; handlers take and return the wire's
  camelCase dicts, validated in-line by compiled validators (``jsonschema_rs``).
* **One task per connection.** The receive loop runs in the websockets
  handler's task; websockets' own keepalive watches the link. A station call
  goes out from the task that makes it (`request`) or, when posted from a
  handler, right after that handler's answer; a posted call or the next
  queued one after a timeout goes out from a short task the connection owns.
  Its timeout is one timer handle on the endpoint's deadline, not a task.
* **Only the answer awaited is taken.** A CALLRESULT or CALLERROR with any
  other id than the call in flight (late, repeated, never asked for) is
  dropped and counted, never queued or stored.

Every frame in and out goes to the `FrameLog` (``ocpp_messages``, tokens and
passwords redacted, counted in the metrics).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, ClassVar, TypeVar

import jsonschema_rs
import ocpp
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from station.domain.events import OcppVersion
from station.errors import (
    ChargepayError,
    ChargePointNotConnected,
    ChargePointTimeout,
    StationUnavailable,
    TransactionNotStored,
)
from station.logs import BoundLogger, get_logger
from station.ocpp import rpc
from station.ocpp.frame_log import FrameLog
from station.ocpp.ports import ChargingEvents, TransactionStatus

_SCHEMAS = Path(ocpp.__file__).parent
_FOLDERS = {OcppVersion.V16: "v16", OcppVersion.V201: "v201", OcppVersion.V21: "v21"}
_KIND_TO_ERROR = {
    "Type": "TypeConstraintViolation",
    "MaxLength": "TypeConstraintViolation",
    "MinLength": "TypeConstraintViolation",
    "Enum": "PropertyConstraintViolation",
    "Minimum": "PropertyConstraintViolation",
    "Maximum": "PropertyConstraintViolation",
    "ExclusiveMinimum": "PropertyConstraintViolation",
    "ExclusiveMaximum": "PropertyConstraintViolation",
    "Pattern": "PropertyConstraintViolation",
    "Format": "PropertyConstraintViolation",
    "Required": "OccurrenceConstraintViolation",
    "MinItems": "OccurrenceConstraintViolation",
    "MaxItems": "OccurrenceConstraintViolation",
    "AdditionalProperties": "FormatViolation",
}
_validators: dict[tuple[str, str, str], jsonschema_rs.Draft4Validator | None] = {}


class CallErrorReply(Exception):
    """Answer the current CALL with this CALLERROR (code in 2.1 spelling)."""

    def __init__(self, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.details = details or {}


def validator(
    version: OcppVersion, action: str, kind: str = "Request"
) -> jsonschema_rs.Draft4Validator | None:
    """The compiled schema of an action's request or response (None: the version has none).

    Compiled once per process and shared by every connection.
    """
    key = (version, action, kind)
    if key not in _validators:
        name = action if version == OcppVersion.V16 and kind == "Request" else f"{action}{kind}"
        path = _SCHEMAS / _FOLDERS[version] / "schemas" / f"{name}.json"
        if not path.exists():  # a 2.1 SEND's schema has no "Request" suffix
            path = path.with_name(f"{action}.json")
        try:
            schema = json.loads(path.read_text(encoding="utf-8-sig"))
            _validators[key] = jsonschema_rs.Draft4Validator(schema)
        except OSError:
            _validators[key] = None
    return _validators[key]


def check_payload(
    version: OcppVersion, action: str, payload: dict[str, Any], kind: str = "Request"
) -> None:
    """Raise CallErrorReply with the matching constraint error if the payload is invalid."""
    schema = validator(version, action, kind)
    if schema is None or schema.is_valid(payload):
        return
    error = next(iter(schema.iter_errors(payload)))
    constraint = type(error.kind).__name__
    path = "/".join(str(p) for p in error.instance_path) or "(payload)"
    raise CallErrorReply(
        _KIND_TO_ERROR.get(constraint, "FormatViolation"),
        f"{path}: {error.message}"[: rpc.MAX_DESCRIPTION],
        {"path": path, "constraint": constraint},
    )


def to_wire(message: Any) -> tuple[str, dict[str, Any]]:
    """An ``ocpp.vXX.call`` dataclass as its action and camelCase payload (Nones left out)."""
    payload = remove_nones(snake_to_camel_case(serialize_as_dict(message)))
    assert isinstance(payload, dict)
    return type(message).__name__, payload


Handler = Callable[[Any, dict[str, Any]], Awaitable[Any]]
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


def handles(action: str) -> Callable[[H], H]:
    """Route incoming ``action`` (a CALL, or a 2.1 SEND) to the decorated method."""
    name = action.value if isinstance(action, Enum) else action

    def mark(method: H) -> H:
        method.ocpp_action = name  # type: ignore[attr-defined]
        return method

    return mark


def parse_time(text: str | None) -> datetime:
    """An OCPP timestamp as an aware UTC datetime (naive ones are taken as UTC).

    Raises CallErrorReply(FormatViolation) for text that is no time, or a time
    that falls outside what a datetime holds once in UTC.
    """
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except ValueError as exc:
        raise CallErrorReply("FormatViolation", f"not an RFC 3339 time: {text!r}") from exc
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise CallErrorReply("FormatViolation", f"outside years 1-9999 in UTC: {text!r}") from exc


def now_iso() -> str:
    return wire_time(datetime.now(UTC))


def wire_time(at: datetime) -> str:
    """An OCPP timestamp; a naive time is UTC (as the store keeps it)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class OcppConnection:
    """Base of the version adapters: one per connected charge point."""

    version: ClassVar[OcppVersion]
    known_actions: ClassVar[frozenset[str]]
    messages: ClassVar[ModuleType]  # ocpp.vXX.call
    results: ClassVar[ModuleType]  # ocpp.vXX.call_result
    # action -> handler, built once per class from the `handles` marks (shared, read-only).
    routes: ClassVar[Mapping[str, Handler]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        routes: dict[str, Handler] = {}
        for name in dir(cls):
            action = getattr(getattr(cls, name, None), "ocpp_action", None)
            if isinstance(action, str):
                routes[action] = getattr(cls, name)
        cls.routes = MappingProxyType(routes)

    def __init__(
        self,
        charge_point_id: str,
        websocket: ServerConnection,
        *,
        events: ChargingEvents,
        frames: FrameLog | None,
        call_timeout_s: float,
        heartbeat_interval_s: int = 300,
        limits: dict[tuple[str, int], Any] | None = None,
    ) -> None:
        self.charge_point_id = charge_point_id
        self.websocket = websocket
        self.events = events
        self.frames = frames if frames is not None else FrameLog()  # None: logged nowhere
        self.call_timeout_s = call_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        # Caps to hand the charge point with a remote-started transaction (2.1).
        self.limits = limits if limits is not None else {}
        self.rpc = rpc.Endpoint(self.version, call_timeout_s)
        # Futures of `request` calls by message id (a posted call has none); lazily made.
        self._awaited: dict[str, asyncio.Future[Any]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sender: asyncio.Task[None] | None = None
        self._serving: asyncio.Task[Any] | None = None
        self._closed = False

    @property
    def log(self) -> BoundLogger:
        """A logger bound to this charge point (made when used: most connections log little)."""
        return get_logger(__name__, charge_point_id=self.charge_point_id)

    # --- the connection's task ---------------------------------------------------------

    async def serve(self) -> None:
        """Receive frames until the socket closes, then fail what is still awaited.

        Runs in the task that calls it (websockets' handler task): the
        connection's only long-lived task. Safe to cancel.
        """
        self._serving = asyncio.current_task()
        try:
            async for frame in self.websocket:
                await self.handle_frame(frame)
                if self.rpc.deadline is None:
                    await self._send_next()  # a call a handler posted goes out now
        except ConnectionClosed:
            pass
        finally:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            sender = self._sender
            if sender is not None and not sender.done():
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            for call in self.rpc.close():
                self._fail(call, ChargePointNotConnected(self.charge_point_id))

    async def request(self, message: Any) -> Any:
        """Send an ``ocpp.vXX.call`` message and await its ``call_result``.

        Never await this inside a handler (its answer comes in through the
        loop the handler is holding). Raises ChargePointTimeout,
        ChargePointNotConnected or StationUnavailable (a CALLERROR, or a
        message or answer that breaks its schema).
        """
        if self._closed:
            raise ChargePointNotConnected(self.charge_point_id)
        call = self._queue(message)
        if call is None:
            raise StationUnavailable(f"{type(message).__name__} breaks its schema")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._awaited is None:
            self._awaited = {}
        self._awaited[call.unique_id] = future
        try:
            async with asyncio.timeout(self.call_timeout_s * 2):
                await self._send_next()
                reply = await future
        finally:
            self._awaited.pop(call.unique_id, None)
            self.rpc.withdraw(call.unique_id)
        return self._result(message, reply)

    def post(self, message: Any) -> None:
        """Queue a call without waiting for it; safe inside a handler (dropped once closed)."""
        if self._closed:
            self.log.info("ocpp.posted_call_dropped", action=type(message).__name__)
        elif self._queue(message) is not None:
            self._kick()

    def _queue(self, message: Any) -> rpc.Outgoing | None:
        action, payload = to_wire(message)
        try:
            check_payload(self.version, action, payload)
        except CallErrorReply as exc:
            self.log.warning("ocpp.call_invalid", action=action, detail=exc.description)
            return None
        return self.rpc.call(action, payload)

    def _kick(self) -> None:
        """Have the next queued call sent: by the receive loop if a handler posted it, else
        by a short task the connection owns (awaited or cancelled when it closes)."""
        current = asyncio.current_task()
        if current is self._serving or self._closed or self.rpc.deadline is not None:
            return
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_next())

    async def _send_next(self) -> None:
        """Send the next queued call if none is in flight, and time it."""
        loop = asyncio.get_running_loop()
        call = self.rpc.next_call(loop.time())
        if call is None:
            return
        deadline = self.rpc.deadline
        assert deadline is not None
        self._timer = loop.call_at(deadline, self._on_deadline)
        self.frames.record(
            self.charge_point_id, "out", 2, call.unique_id, call.action, call.payload, call.text
        )
        await self._send_text(call.text)

    def _on_deadline(self) -> None:
        call = self.rpc.expire(asyncio.get_running_loop().time())
        if call is not None:
            self._fail(call, ChargePointTimeout(f"{call.action} unanswered"))
            self._kick()

    def _fail(self, call: rpc.Outgoing, exc: Exception) -> None:
        future = None if self._awaited is None else self._awaited.get(call.unique_id)
        if future is None:
            name, detail = type(exc).__name__, str(exc)
            self.log.warning(
                "ocpp.posted_call_failed", action=call.action, error=name, detail=detail
            )
        elif not future.done():
            future.set_exception(exc)

    def _result(self, message: Any, reply: rpc.Reply) -> Any:
        """The ``call_result`` dataclass of an answer (its CALLERROR or schema breach raised)."""
        action = reply.call.action
        if reply.error is not None:
            code, description, _ = reply.error
            self.log.warning("ocpp.call_error", action=action, code=code)
            raise StationUnavailable(f"CALLERROR {code}: {description}")
        payload = reply.payload if isinstance(reply.payload, dict) else {}
        try:
            check_payload(self.version, action, payload, "Response")
            return getattr(self.results, action)(**camel_to_snake_case(payload))
        except (CallErrorReply, TypeError) as exc:
            self.log.warning("ocpp.answer_invalid", action=action, detail=str(exc)[:255])
            raise StationUnavailable(f"{action} answered outside its schema: {exc}") from exc

    # --- frames ------------------------------------------------------------------------

    async def handle_frame(self, frame: str | bytes) -> None:
        """Hand one incoming frame to the endpoint and carry out what it calls for."""
        try:
            text = frame.decode() if isinstance(frame, bytes) else frame
        except UnicodeDecodeError:
            text = "\ufffd"  # not UTF-8: answered like any other non-JSON
        event = self.rpc.receive(text)
        log = event.log
        if isinstance(event, rpc.Unsolicited):
            self.frames.dropped(self.charge_point_id, log.kind)
            count = self.rpc.unsolicited
            if count == 1 or count % 1000 == 0:
                self.log.warning("ocpp.unsolicited_answer", count=count)
            return
        self.frames.record(
            self.charge_point_id, "in", log.kind, log.unique_id, log.action, log.payload, log.text
        )
        if isinstance(event, rpc.Call):
            await self._on_call(event.unique_id, event.action, event.payload)
        elif isinstance(event, rpc.Reply):
            self._on_reply(event)
        elif isinstance(event, rpc.Send):
            await self._on_send(event.action, event.payload)
        elif isinstance(event, rpc.Refused):
            await self._refuse(event.unique_id, event.code, event.description, event.details)
        elif isinstance(event, rpc.ResultError):
            self.log.warning(
                "ocpp.call_result_error", code=event.code, detail=event.description[:255]
            )
        else:
            self.log.info("ocpp.frame_ignored", reason=event.reason)

    def _on_reply(self, reply: rpc.Reply) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        future = None if self._awaited is None else self._awaited.get(reply.call.unique_id)
        if future is not None and not future.done():
            future.set_result(reply)
        elif reply.error is not None:
            code = reply.error[0]
            self.log.warning("ocpp.posted_call_failed", action=reply.call.action, error=code)

    async def _on_call(self, unique_id: str, action: str, payload: dict[str, Any]) -> None:
        handler = self.routes.get(action)
        if handler is None:
            # OCPP-J: NotImplemented = "not known by receiver", NotSupported = "recognized
            # but not supported" (the ocpp library's docstrings have the two swapped).
            code = "NotSupported" if action in self.known_actions else "NotImplemented"
            name = rpc.storable_text(action)[:64]
            await self._refuse(unique_id, code, f"{name} is not handled by this station")
            return
        try:
            check_payload(self.version, action, payload)
            response = await handler(self, payload)
        except asyncio.CancelledError:
            raise
        except CallErrorReply as exc:
            self.log.info("ocpp.call_refused", action=action, code=exc.code, detail=exc.description)
            await self._refuse(unique_id, exc.code, exc.description, exc.details)
            return
        except TransactionNotStored:
            # OCPP lets a charge point discard a transaction message answered with
            # CALLERRORs (1.6 §3.7.1; 2.x use case E13, where an unanswered call counts
            # as an attempt too); one it could not deliver while offline stays queued
            # and is sent after reconnecting. So no answer: close, and it resends.
            self.log.warning("ocpp.transaction_not_stored", action=action, unique_id=unique_id)
            await self.websocket.close(1013, "try again later: not stored")
            return
        except ChargepayError as exc:
            self.log.warning("ocpp.call_failed", action=action, error=type(exc).__name__)
            await self._refuse(unique_id, exc.ocpp_error, exc.detail)
            return
        except Exception:
            self.log.exception("ocpp.handler_failed", action=action)
            await self._refuse(unique_id, "InternalError", "An internal error occurred")
            return
        text = self.rpc.result(unique_id, response)
        self.frames.record(self.charge_point_id, "out", 3, unique_id, action, response, text)
        await self._send_text(text)

    async def _on_send(self, action: str, payload: dict[str, Any]) -> None:
        """A 2.1 SEND: handled like a CALL, never answered, not even with an error."""
        handler = self.routes.get(action)
        if handler is None:
            self.log.info("ocpp.send_ignored", action=rpc.storable_text(action)[:64])
            return
        try:
            check_payload(self.version, action, payload)
            await handler(self, payload)
        except asyncio.CancelledError:
            raise
        except (CallErrorReply, ChargepayError) as exc:
            self.log.info("ocpp.send_refused", action=action, error=str(exc)[:255])
        except Exception:
            self.log.exception("ocpp.handler_failed", action=action)

    async def _refuse(
        self, unique_id: str, code: str, description: str, details: dict[str, Any] | None = None
    ) -> None:
        body, text = self.rpc.error(unique_id, code, description, details)
        self.frames.record(self.charge_point_id, "out", 4, unique_id, None, body, text)
        await self._send_text(text)

    async def _send_text(self, text: str) -> None:
        try:
            if not getattr(self.websocket, "paused", True):
                # The transport takes it at once: no wait to bound (a timer per frame otherwise).
                await self.websocket.send(text)
                return
            async with asyncio.timeout(self.call_timeout_s):
                await self.websocket.send(text)
        except ConnectionClosed:
            pass
        except TimeoutError:  # the peer stopped reading: drop it, it will reconnect
            self.log.warning("ocpp.send_timeout", timeout_s=self.call_timeout_s)
            if self.websocket.transport is not None:
                self.websocket.transport.abort()

    # --- commands every version implements ---------------------------------------------

    async def remote_start(
        self, *, evse_id: int, id_token: str, remote_start_id: int
    ) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    async def remote_stop(self, transaction_ref: str) -> bool:  # pragma: no cover
        raise NotImplementedError

    def post_remote_stop(self, transaction_ref: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def post_cost_updated(self, transaction_ref: str, total_cost: Any) -> None:
        """CostUpdated (2.x); 1.6 has no such message."""

    def post_charging_limit(self, transaction_ref: str, limit: Any) -> None:
        """SetChargingProfile on the running transaction (1.6, 2.0.1); 2.1 has maxCost."""

    async def transaction_status(self, transaction_ref: str) -> TransactionStatus | None:
        """GetTransactionStatus (2.x); None on 1.6, which has no such message."""
        return None

    async def trigger(self, requested_message: str, evse_id: int | None = None) -> bool:
        raise NotImplementedError  # pragma: no cover
