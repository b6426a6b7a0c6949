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
  breaks the schema the matching constraint error (descriptions cut to the
  255 characters 2.x allows). The connection carries on in every case.
* **Speed.** The library validates each payload in a thread (one executor hop
  per message, twice) and converts keys with regular expressions. Here
  payloads are validated in-line by compiled validators (``jsonschema_rs``),
  and handlers take and return the wire's camelCase dicts.
* **Station-initiated calls go out from the connection's own task**, fed by a
  queue, never from inside a handler (the library would deadlock): `request`
  awaits the answer, `post` does not.
* **Only the answer awaited is taken.** Each outgoing call's id is known
  here; a CALLRESULT or CALLERROR with any other id (late, repeated, or never
  asked for) is dropped and counted, never queued or stored (the library
  queued every answer and recursed once per stray one while looking for its
  own, so a flood of them ended in RecursionError).

What an incoming frame is (CALL, SEND, answer, refusal) is decided by
`station.ocpp.rpc` without I/O, including which message types each version
knows and the input hygiene (no unstorable string or out-of-range integer
reaches the services); this module carries the decision out.

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
from station.ocpp import rpc, wire
from station.ocpp.frame_log import FrameLog
from station.ocpp.ports import ChargingEvents, TransactionStatus

_SCHEMAS = Path(ocpp.__file__).parent

# Spellings that differ by version: only 1.6 writes "Occurence" (2.0.1 and 2.1 fixed it).
_SPELLING = {
    OcppVersion.V16: {
        "FormatViolation": "FormationViolation",
        "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
        "RpcFrameworkError": "ProtocolError",
        "MessageTypeNotSupported": "ProtocolError",
    },
    OcppVersion.V201: {},
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
        if not path.exists():  # a 2.1 SEND's schema has no "Request" suffix
            path = path.with_name(f"{action}.json")
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
        f"{path}: {error.message}"[: rpc.MAX_DESCRIPTION],
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
        # The id of the station-initiated call awaiting its answer: any other answer is dropped.
        self._awaiting: str | None = None
        self._unsolicited = 0

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
            while not self._response_queue.empty():  # a late answer to an earlier call
                self._response_queue.get_nowait()
            unique_id = str(self._unique_id_generator())  # type: ignore[attr-defined]
            self._awaiting = unique_id
            try:
                async with asyncio.timeout(self.call_timeout_s):
                    result = await self.call(payload, suppress=False, unique_id=unique_id)
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
            finally:
                self._awaiting = None
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
        """Classify one incoming frame (`rpc.classify`) and carry out what it calls for."""
        try:
            text = frame.decode() if isinstance(frame, bytes) else frame
        except UnicodeDecodeError:
            text = "\ufffd"  # not UTF-8: answered like any other non-JSON
        message = rpc.classify(text, self.version)
        if isinstance(message, rpc.Answer):
            self._on_answer(message)
            return
        log = message.log
        self.frames.record(
            self.charge_point_id, "in", log.kind, log.unique_id, log.action, log.payload, log.text
        )
        if isinstance(message, rpc.Call):
            await self._on_call(message.unique_id, message.action, message.payload)
        elif isinstance(message, rpc.Send):
            await self._on_send(message.unique_id, message.action, message.payload)
        elif isinstance(message, rpc.Refused):
            await self._send_error(
                message.unique_id, message.code, message.description, message.details
            )
        elif isinstance(message, rpc.ResultError):
            self.log.warning(
                "ocpp.call_result_error", code=message.code, detail=message.description[:255]
            )
        else:
            self.log.info("ocpp.frame_ignored", reason=message.reason)

    def _on_answer(self, answer: rpc.Answer) -> None:
        """Hand an answer to the call in flight, or drop it (counted, never buffered)."""
        if self._awaiting is None or answer.unique_id != self._awaiting:
            self.frames.dropped(self.charge_point_id, answer.log.kind)
            self._unsolicited += 1
            if self._unsolicited == 1 or self._unsolicited % 1000 == 0:
                self.log.warning("ocpp.unsolicited_answer", count=self._unsolicited)
            return
        log = answer.log
        self.frames.record(
            self.charge_point_id, "in", log.kind, log.unique_id, None, log.payload, log.text
        )
        self._awaiting = None  # one answer per call: a repeat is unsolicited
        if answer.error is None:
            self._response_queue.put_nowait(CallResult(answer.unique_id, answer.payload))
        else:
            code, description, details = answer.error
            self._response_queue.put_nowait(CallError(answer.unique_id, code, description, details))

    async def _on_call(self, unique_id: str, action: str, payload: dict[str, Any]) -> None:
        handler = self.route_map.get(action, {}).get("_on_action")
        if handler is None:
            # OCPP-J: NotImplemented = "not known by receiver", NotSupported = "recognized
            # but not supported" (the ocpp library's docstrings have the two swapped).
            code = "NotSupported" if action in self.known_actions else "NotImplemented"
            name = rpc.storable_text(action)[:64]
            await self._send_error(unique_id, code, f"{name} is not handled by this station")
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

    async def _get_specific_response(self, unique_id: str, timeout: float) -> Any:  # noqa: ASYNC109 (the library's signature)
        """The answer to the call in flight (the library's own recursed per stray answer).

        Only answers to ``unique_id`` reach the queue (`_on_answer`); one left
        over from an earlier, timed-out call is skipped.
        """
        async with asyncio.timeout(timeout):
            while True:
                response = await self._response_queue.get()
                if response.unique_id == unique_id:
                    return response

    async def _on_send(self, unique_id: str, action: str, payload: dict[str, Any]) -> None:
        """A 2.1 SEND: handled like a CALL, never answered, not even with an error."""
        handler = self.route_map.get(action, {}).get("_on_action")
        if handler is None:
            self.log.info("ocpp.send_ignored", action=rpc.storable_text(action)[:64])
            return
        try:
            check_payload(self.version, action, payload)
            await handler(payload)
        except asyncio.CancelledError:
            raise
        except (CallErrorReply, ChargepayError, OCPPError) as exc:
            self.log.info("ocpp.send_refused", action=action, error=str(exc)[:255])
        except Exception:
            self.log.exception("ocpp.handler_failed", action=action)

    async def _send_error(
        self, unique_id: str, code: str, description: str, details: dict[str, Any] | None = None
    ) -> None:
        code = self._code.get(code, code)
        description = description[: rpc.MAX_DESCRIPTION]
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

    async def transaction_status(self, transaction_ref: str) -> TransactionStatus | None:
        """GetTransactionStatus (2.x); None on 1.6, which has no such message."""
        return None

    async def trigger(self, requested_message: str, evse_id: int | None = None) -> bool:
        raise NotImplementedError  # pragma: no cover
