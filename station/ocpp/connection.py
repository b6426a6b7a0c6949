"""One charge point's connection: the frame loop, validation, errors, outgoing calls.

`OcppConnection` is the base of the three version adapters (each also an
``ocpp.vXX.ChargePoint``, so the library's ``@on`` routing and ``call()``
are used). It replaces the library's receive path, for three reasons:

* **Every CALL gets an answer.** The library drops frames that are not JSON
  without a word, and on 2.1 it leaves an action without a handler
  unanswered. Here a frame that is not JSON gets a CALLERROR
  ``FormatViolation`` (1.6: ``FormationViolation``) with message id ``-1``; a
  frame that is JSON but not an RPC frame gets ``RpcFrameworkError`` (1.6:
  ``ProtocolError``); an action unknown to the version ``NotImplemented``, a
  known one the station does not handle ``NotSupported``; a payload that
  breaks the schema the matching constraint error. The connection carries on in every case.
* **Speed.** The library validates each payload in a thread (one executor hop
  per message, twice) and converts keys with regular expressions. Here
  payloads are validated in-line by compiled validators (``jsonschema_rs``),
  and handlers take and return the wire's camelCase dicts.
* **Station-initiated calls go out from the connection's own task**, fed by a
  queue, never from inside a handler (the library would deadlock): `request`
  awaits the answer, `post` does not.

Every frame in and out goes to the `FrameLog` (``ocpp_messages``, tokens and
passwords redacted, counted in the metrics).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import jsonschema_rs
import ocpp
from ocpp.exceptions import OCPPError
from ocpp.messages import CallError, CallResult
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
from station.ocpp import wire
from station.ocpp.frame_log import FrameLog
from station.ocpp.ports import ChargingEvents

_SCHEMAS = Path(ocpp.__file__).parent

# Spellings that differ by version (1.6 errata; 2.0.1 per the ocpp library's notes).
_SPELLING = {
    OcppVersion.V16: {
        "FormatViolation": "FormationViolation",
        "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
        "RpcFrameworkError": "ProtocolError",
        "MessageTypeNotSupported": "ProtocolError",
    },
    OcppVersion.V201: {"OccurrenceConstraintViolation": "OccurenceConstraintViolation"},
    OcppVersion.V21: {},
}
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
_validators: dict[tuple[str, str], jsonschema_rs.Draft4Validator | None] = {}


class CallErrorReply(Exception):
    """Answer the current CALL with this CALLERROR (code in 2.1 spelling)."""

    def __init__(self, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.details = details or {}


def validator(version: OcppVersion, action: str) -> jsonschema_rs.Draft4Validator | None:
    """The compiled request schema of an action (None when the version has none)."""
    key = (version, action)
    if key not in _validators:
        folder = {"ocpp1.6": "v16", "ocpp2.0.1": "v201", "ocpp2.1": "v21"}[version]
        name = action if version == OcppVersion.V16 else f"{action}Request"
        path = _SCHEMAS / folder / "schemas" / f"{name}.json"
        try:
            schema = json.loads(path.read_text(encoding="utf-8-sig"))
            _validators[key] = jsonschema_rs.Draft4Validator(schema)
        except OSError:
            _validators[key] = None
    return _validators[key]


def check_payload(version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    """Raise CallErrorReply with the matching constraint error if the payload is invalid."""
    schema = validator(version, action)
    if schema is None or schema.is_valid(payload):
        return
    error = next(iter(schema.iter_errors(payload)))
    kind = type(error.kind).__name__
    path = "/".join(str(p) for p in error.instance_path) or "(payload)"
    raise CallErrorReply(
        _KIND_TO_ERROR.get(kind, "FormatViolation"),
        f"{path}: {error.message}"[:500],
        {"path": path, "constraint": kind},
    )


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
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Outgoing = tuple[Any, asyncio.Future[Any] | None]
_CLOSED: Any = object()  # queued by serve() on the way out: the send loop stops there


class OcppConnection:
    """Base of the version adapters; mixed with ``ocpp.vXX.ChargePoint``."""

    version: ClassVar[OcppVersion]
    known_actions: ClassVar[frozenset[str]]

    route_map: dict[str, dict[str, Any]]
    _response_queue: asyncio.Queue[Any]
    call: Callable[..., Awaitable[Any]]

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
        super().__init__(charge_point_id, websocket, response_timeout=call_timeout_s)  # type: ignore[call-arg]
        self.charge_point_id = charge_point_id
        self.websocket = websocket
        self.events = events
        self.frames = frames if frames is not None else FrameLog()  # None: logged nowhere
        self.call_timeout_s = call_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        # Caps to hand the charge point with a remote-started transaction (2.1).
        self.limits = limits if limits is not None else {}
        self.log: BoundLogger = get_logger(__name__, charge_point_id=charge_point_id)
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._code = _SPELLING[self.version]

    # --- the connection's tasks --------------------------------------------------------

    async def serve(self) -> None:
        """Receive frames and send queued calls until the socket closes. Safe to cancel."""
        try:
            async with asyncio.TaskGroup() as tasks:
                outgoing = tasks.create_task(self._send_calls())
                try:
                    async for frame in self.websocket:
                        await self.handle_frame(frame)
                except ConnectionClosed:
                    pass
                finally:
                    # The sentinel ends the loop even if the cancellation is lost.
                    self._outbox.put_nowait((_CLOSED, None))
                    outgoing.cancel()
        finally:
            while not self._outbox.empty():
                _, future = self._outbox.get_nowait()
                if future is not None and not future.done():
                    future.set_exception(ChargePointNotConnected(self.charge_point_id))

    async def _send_calls(self) -> None:
        """Send queued calls one at a time until cancelled or `_CLOSED` is dequeued.

        A cancellation racing a reply can be swallowed inside the library's
        ``call()`` (Python 3.11's ``asyncio.wait_for``) and surface as an
        ordinary failure; after every call the task's ``cancelling()`` count
        is checked so the loop still ends (STYLE §9: its owner awaits it).
        """
        task = asyncio.current_task()
        while True:
            payload, future = await self._outbox.get()
            if payload is _CLOSED:
                return
            try:
                async with asyncio.timeout(self.call_timeout_s):
                    result = await self.call(payload, suppress=False)
            except asyncio.CancelledError:
                if future is not None and not future.done():
                    future.set_exception(ChargePointNotConnected(self.charge_point_id))
                raise
            except TimeoutError:
                self._settle(future, ChargePointTimeout(f"{type(payload).__name__} unanswered"))
            except ConnectionClosed:
                self._settle(future, ChargePointNotConnected(self.charge_point_id))
            except OCPPError as exc:
                self.log.warning("ocpp.call_error", action=type(payload).__name__, code=exc.code)
                self._settle(future, StationUnavailable(f"CALLERROR {exc.code}: {exc.description}"))
            except Exception as exc:
                self.log.exception("ocpp.call_failed", action=type(payload).__name__)
                self._settle(future, StationUnavailable(f"{type(payload).__name__} failed: {exc}"))
            else:
                if future is not None and not future.done():
                    future.set_result(result)
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # a cancellation the call swallowed

    def _settle(self, future: asyncio.Future[Any] | None, exc: Exception) -> None:
        if future is None:
            self.log.warning("ocpp.posted_call_failed", error=type(exc).__name__, detail=str(exc))
        elif not future.done():
            future.set_exception(exc)

    async def request(self, payload: Any) -> Any:
        """Send a call from the connection's task and await the answer.

        Never await this inside a handler. Raises ChargePointTimeout,
        ChargePointNotConnected or StationUnavailable (a CALLERROR).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._outbox.put_nowait((payload, future))
        async with asyncio.timeout(self.call_timeout_s * 2):
            return await future

    def post(self, payload: Any) -> None:
        """Queue a call without waiting for it; safe inside a handler."""
        self._outbox.put_nowait((payload, None))

    # --- frames ------------------------------------------------------------------------

    async def handle_frame(self, frame: str | bytes) -> None:
        try:
            text = frame.decode() if isinstance(frame, bytes) else frame
            message = wire.parse(text)
        except ValueError:
            self.frames.record(
                self.charge_point_id, "in", 0, "-1", None, {"unparsable": str(frame[:200])}
            )
            await self._send_error("-1", "FormatViolation", "Message is not valid JSON")
            return
        if (
            not isinstance(message, list)
            or len(message) < 3
            or not isinstance(message[1], str)
            or message[0] not in (2, 3, 4)
        ):
            unique_id = (
                message[1]
                if isinstance(message, list) and len(message) > 1 and isinstance(message[1], str)
                else "-1"
            )
            self.frames.record(
                self.charge_point_id, "in", 0, unique_id[:64], None, {"unparsable": text[:200]}
            )
            bad_type = (
                isinstance(message, list)
                and bool(message)
                and isinstance(message[0], int)
                and message[0] not in (2, 3, 4)
            )
            await self._send_error(
                unique_id,
                "MessageTypeNotSupported" if bad_type else "RpcFrameworkError",
                "Not an OCPP-J RPC frame",
            )
            return
        kind, unique_id = message[0], message[1]
        if kind == 2:
            if (
                len(message) != 4
                or not isinstance(message[2], str)
                or not isinstance(message[3], dict)
            ):
                self.frames.record(
                    self.charge_point_id, "in", 2, unique_id[:64], None, {"unparsable": text[:200]}
                )
                await self._send_error(
                    unique_id, "RpcFrameworkError", "CALL needs [2, id, action, {}]"
                )
                return
            self.frames.record(
                self.charge_point_id, "in", 2, unique_id, message[2], message[3], text
            )
            await self._on_call(unique_id, message[2], message[3])
        elif kind == 3:
            self.frames.record(self.charge_point_id, "in", 3, unique_id, None, message[2], text)
            self._response_queue.put_nowait(CallResult(unique_id, message[2]))
        else:
            self.frames.record(self.charge_point_id, "in", 4, unique_id, None, message[2:], text)
            code, description, details = [*message[2:5], "", "", {}][:3]
            self._response_queue.put_nowait(CallError(unique_id, code, description, details))

    async def _on_call(self, unique_id: str, action: str, payload: dict[str, Any]) -> None:
        handler = self.route_map.get(action, {}).get("_on_action")
        if handler is None:
            # OCPP-J: NotImplemented = "not known by receiver", NotSupported = "recognized
            # but not supported" (the ocpp library's docstrings have the two swapped).
            code = "NotSupported" if action in self.known_actions else "NotImplemented"
            await self._send_error(unique_id, code, f"{action} is not handled by this station")
            return
        try:
            check_payload(self.version, action, payload)
            response = await handler(payload)
        except asyncio.CancelledError:
            raise
        except CallErrorReply as exc:
            self.log.info("ocpp.call_refused", action=action, code=exc.code, detail=exc.description)
            await self._send_error(unique_id, exc.code, exc.description, exc.details)
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
            await self._send_error(unique_id, exc.ocpp_error, exc.detail)
            return
        except OCPPError as exc:
            await self._send_error(unique_id, exc.code, exc.description or exc.code)
            return
        except Exception:
            self.log.exception("ocpp.handler_failed", action=action)
            await self._send_error(unique_id, "InternalError", "An internal error occurred")
            return
        await self._send_frame(3, unique_id, action, response)

    async def _send_error(
        self, unique_id: str, code: str, description: str, details: dict[str, Any] | None = None
    ) -> None:
        code = self._code.get(code, code)
        await self._send_frame(4, unique_id, None, [code, description, details or {}])

    async def _send_frame(self, kind: int, unique_id: str, action: str | None, body: Any) -> None:
        text = wire.encode([4, unique_id, *body] if kind == 4 else [kind, unique_id, body])
        self.frames.record(self.charge_point_id, "out", kind, unique_id, action, body, text)
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
            self.websocket.transport.abort()

    async def _send(self, message: str) -> None:
        """The library's send path (station-initiated CALLs from `call()`)."""
        parsed = wire.parse(message)
        self.frames.record(
            self.charge_point_id, "out", parsed[0], parsed[1], parsed[2], parsed[3], message
        )
        await self.websocket.send(message)

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

    async def trigger(self, requested_message: str, evse_id: int | None = None) -> bool:
        raise NotImplementedError  # pragma: no cover
