"""OCPP-J RPC frames from a charge point, classified without I/O.

`classify` turns the text of one incoming frame into what the connection must
do with it; nothing here sends, awaits or stores anything:

* `Call` — ``[2, id, action, payload]``: route it and answer it.
* `Send` — ``[6, id, action, payload]`` (2.1 only): route it, never answer it.
* `Answer` — ``[3, id, payload]`` or ``[4, id, code, description, details]``:
  hand it to the call in flight with that id; an answer to no call in flight
  is dropped (the connection counts it) and never buffered or stored whole.
* `ResultError` — ``[5, id, code, description, details]`` (2.1 only): the
  charge point could not process one of our CALLRESULTs. Kept in the frame
  log, never answered.
* `Refused` — answer with this CALLERROR (codes in 2.x spelling; the
  connection spells them for its version).
* `Ignored` — 1.6 ignores a frame whose message type id it does not know.

`Endpoint` holds the rest of one connection's RPC state, still without I/O:
the station's calls (ids, the one in flight, its deadline, the queue behind
it), which answer belongs to which call, and the version's error spellings.

Message types by version: 1.6 and 2.0.1 know 2, 3 and 4 (2.0.1 answers any
other id with MessageTypeNotSupported); 2.1 adds CALLRESULTERROR (5) and SEND (6).

**Input hygiene.** A frame is refused before anything is written when it holds
a string no database column can take — a lone surrogate (``"\\ud800"``, which
no UTF-8 encoder takes) or NUL (which PostgreSQL text refuses) — or an
integer in a field stored as an integer column (``connectorId``, ``evseId``,
``id``, ``seqNo``, ``remoteStartId``) outside the 32-bit range OCPP gives its
integers, or a 1.6 ``meterStart`` / ``meterStop`` past 10^15 Wh. A message
id must be a string of at most 36 characters (all three versions). The frame
log's copy of a refused frame has such strings escaped (`storable`), so its
row is stored like any other.

A frame from a websocket is valid UTF-8, so a surrogate or NUL can only come
from a ``\\u`` escape and a 32-bit overflow needs ten digits or an exponent:
frames without either skip the walk (the common case, on the hot path).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from station.domain.events import OcppVersion
from station.ocpp import wire

MAX_ID_LENGTH = 36
MAX_DESCRIPTION = 255  # errorDescription is string[255] in 2.x (1.6 sets no bound)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INTEGER_KEYS = frozenset({"connectorId", "evseId", "id", "seqNo", "remoteStartId"})
# 1.6 meter registers (Wh) go to NUMERIC(20, 3); past 10^15 Wh no meter reads (metering's bound).
REGISTER_KEYS = frozenset({"meterStart", "meterStop"})
REGISTER_MAX = 10**15 - 1
_BOUNDS = {
    **{key: (INT32_MIN, INT32_MAX) for key in INTEGER_KEYS},
    **{key: (-REGISTER_MAX, REGISTER_MAX) for key in REGISTER_KEYS},
}
_MESSAGE_TYPES = {
    OcppVersion.V16: frozenset({2, 3, 4}),
    OcppVersion.V201: frozenset({2, 3, 4}),
    OcppVersion.V21: frozenset({2, 3, 4, 5, 6}),
}
_SUSPECT = re.compile(r"\\u|[0-9]{10}|[0-9][eE]")


@dataclass(frozen=True, slots=True)
class Logged:
    """What the frame log keeps of an incoming frame (strings already storable).

    ``text`` is the frame as received when ``payload`` is exactly its payload
    (the log's redaction uses it to skip frames without secrets); else None.
    """

    kind: int
    unique_id: str
    action: str | None
    payload: Any
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]
    log: Logged


@dataclass(frozen=True, slots=True)
class Send:
    unique_id: str
    action: str
    payload: dict[str, Any]
    log: Logged


@dataclass(frozen=True, slots=True)
class Answer:
    """A CALLRESULT (``error`` None) or CALLERROR to a station-initiated call."""

    unique_id: str
    payload: Any
    error: tuple[str, str, dict[str, Any]] | None
    log: Logged


@dataclass(frozen=True, slots=True)
class ResultError:
    unique_id: str
    code: str
    description: str
    log: Logged


@dataclass(frozen=True, slots=True)
class Refused:
    unique_id: str
    code: str
    description: str
    details: dict[str, Any]
    log: Logged


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str
    log: Logged


Frame = Call | Send | Answer | ResultError | Refused | Ignored


def classify(text: str, version: OcppVersion) -> Frame:
    """What an incoming frame is (see the module docstring)."""
    try:
        message = wire.parse(text)
    except ValueError:
        unparsable = Logged(0, "-1", None, {"unparsable": storable_text(text[:200])})
        return Refused("-1", "FormatViolation", "Message is not valid JSON", {}, unparsable)
    if (
        not isinstance(message, list)
        or len(message) < 3
        or not isinstance(message[0], int)
        or not isinstance(message[1], str)
    ):
        unique_id = (
            message[1]
            if isinstance(message, list) and len(message) > 1 and isinstance(message[1], str)
            else "-1"
        )
        if not _valid_id(unique_id):
            unique_id = "-1"
        log = Logged(0, unique_id, None, {"unparsable": storable_text(text[:200])})
        return Refused(unique_id, "RpcFrameworkError", "Not an OCPP-J RPC frame", {}, log)
    kind: int = message[0]
    unique_id = message[1]
    if kind not in _MESSAGE_TYPES[version]:
        log = Logged(kind, _log_id(unique_id), None, {"unparsable": storable_text(text[:200])})
        if version == OcppVersion.V16:
            return Ignored(f"message type {kind} is not OCPP 1.6", log)
        answer_id = unique_id if _valid_id(unique_id) else "-1"
        return Refused(
            answer_id, "MessageTypeNotSupported", f"Message type {kind} is not supported", {}, log
        )
    if kind in (3, 4):
        return _answer(kind, unique_id, message, text)
    if kind == 5:
        code, description = [*message[2:4], "", ""][:2]
        return ResultError(
            unique_id,
            storable_text(str(code)),
            storable_text(str(description)),
            Logged(5, _log_id(unique_id), None, storable(message[2:]), None),
        )
    framed = _call(kind, unique_id, message, text)
    if kind == 6 and isinstance(framed, Refused):  # a SEND is never answered, not even so
        return Ignored(f"SEND refused: {framed.code} {framed.description}", framed.log)
    return framed


def _call(kind: int, unique_id: str, message: list[Any], text: str) -> Call | Send | Refused:
    """A CALL (2) or SEND (6): ``[kind, id, action, payload]``, payload an object or null."""
    action = message[2] if len(message) > 2 else None
    payload = message[3] if len(message) == 4 else None
    payload = {} if payload is None else payload  # null: an empty payload
    shape_ok = len(message) == 4 and isinstance(action, str) and isinstance(payload, dict)
    suspect = _SUSPECT.search(text) is not None
    problem = unstorable(payload) if suspect and isinstance(payload, dict) else None
    log_action = storable_text(action)[:64] if isinstance(action, str) else None
    if not _valid_id(unique_id):
        log = Logged(
            kind, _log_id(unique_id), log_action, {"unparsable": storable_text(text[:200])}
        )
        description = f"The message id must be a string of at most {MAX_ID_LENGTH} characters"
        return Refused("-1", "RpcFrameworkError", description, {}, log)
    if not shape_ok:
        log = Logged(kind, unique_id, log_action, {"unparsable": storable_text(text[:200])})
        return Refused(unique_id, "RpcFrameworkError", "CALL needs [2, id, action, {}]", {}, log)
    if problem is not None:
        path, reason = problem
        log = Logged(kind, unique_id, log_action, storable(payload))
        details = {"path": path, "constraint": "Storable"}
        return Refused(unique_id, "PropertyConstraintViolation", f"{path}: {reason}", details, log)
    assert isinstance(action, str)  # shape_ok
    log = Logged(kind, unique_id, action, payload, text)
    if kind == 6:
        return Send(unique_id, action, payload, log)
    return Call(unique_id, action, payload, log)


def _answer(kind: int, unique_id: str, message: list[Any], text: str) -> Answer:
    if kind == 3:
        payload = {} if message[2] is None else message[2]
        return Answer(unique_id, payload, None, Logged(3, _log_id(unique_id), None, payload, text))
    code, description, details = [*message[2:5], "", "", {}][:3]
    error = (str(code), str(description), details if isinstance(details, dict) else {})
    return Answer(unique_id, None, error, Logged(4, _log_id(unique_id), None, message[2:], text))


def _valid_id(unique_id: Any) -> bool:
    return (
        isinstance(unique_id, str)
        and 0 < len(unique_id) <= MAX_ID_LENGTH
        and is_storable(unique_id)
    )


def _log_id(unique_id: Any) -> str:
    return storable_text(unique_id)[:64] if isinstance(unique_id, str) else "-1"


def is_storable(text: str) -> bool:
    """Whether both databases can store this string (no lone surrogate, no NUL)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return "\x00" not in text


def storable_text(text: str) -> str:
    """The string with lone surrogates and NUL written as backslash escapes."""
    if is_storable(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def storable(value: Any) -> Any:
    """A copy of a parsed frame with every string (and key) made `storable_text`.

    Recursive: frames are nested at most `wire.MAX_DEPTH` levels.
    """
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def unstorable(value: Any) -> tuple[str, str] | None:
    """The path and reason of the first value no column can take, or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not is_storable(item):
                return path or "(payload)", "a string with a lone surrogate or NUL"
        elif isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}/{storable_text(key)}" if path else storable_text(key)
                if not is_storable(key):
                    return where, "a key with a lone surrogate or NUL"
                bounds = _BOUNDS.get(key)
                if (
                    bounds is not None
                    and isinstance(child, int | float)
                    and not isinstance(child, bool)
                    and not bounds[0] <= child <= bounds[1]
                ):
                    return where, f"outside [{bounds[0]}, {bounds[1]}], what it is stored in"
                stack.append((where, child))
        elif isinstance(item, list):
            stack.extend((f"{path}/{i}" if path else str(i), child) for i, child in enumerate(item))
    return None


# --- one connection's RPC state: ids, the call in flight, its deadline, spellings ---------

# Spellings that differ by version: only 1.6 writes "Occurence" (2.0.1 and 2.1 fixed it).
SPELLING: dict[OcppVersion, dict[str, str]] = {
    OcppVersion.V16: {
        "FormatViolation": "FormationViolation",
        "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
        "RpcFrameworkError": "ProtocolError",
        "MessageTypeNotSupported": "ProtocolError",
    },
    OcppVersion.V201: {},
    OcppVersion.V21: {},
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A station-initiated CALL: its id, action, payload and the text that goes out."""

    unique_id: str
    action: str
    payload: dict[str, Any]
    text: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to the call in flight (`Endpoint.receive` matched it by id)."""

    call: Outgoing
    payload: Any
    error: tuple[str, str, dict[str, Any]] | None
    log: Logged


@dataclass(frozen=True, slots=True)
class Unsolicited:
    """An answer to no call in flight (late, repeated or never asked for): dropped."""

    log: Logged


Event = Call | Send | Reply | Unsolicited | ResultError | Refused | Ignored


class Endpoint:
    """One connection's RPC state, without I/O: text in → events; calls and answers out.

    Owns the message ids of the station's calls, the one call in flight
    (OCPP-J allows one at a time per direction) with its deadline, the calls
    waiting behind it, and how errors are spelt for the version. The
    connection moves the texts and keeps a timer on `deadline`; times are the
    caller's clock (``loop.time()``), so tests pass plain numbers.
    """

    __slots__ = (
        "_deadline",
        "_in_flight",
        "_spelling",
        "_waiting",
        "timeout_s",
        "unsolicited",
        "version",
    )

    def __init__(self, version: OcppVersion, timeout_s: float) -> None:
        self.version = version
        self.timeout_s = timeout_s
        self.unsolicited = 0
        self._spelling = SPELLING[version]
        self._in_flight: Outgoing | None = None
        self._deadline = 0.0
        self._waiting: list[Outgoing] | None = None  # most connections never queue one

    # --- incoming ------------------------------------------------------------------------

    def receive(self, text: str) -> Event:
        """What an incoming frame is; an answer is matched against the call in flight."""
        frame = classify(text, self.version)
        if not isinstance(frame, Answer):
            return frame
        call = self._in_flight
        if call is None or frame.unique_id != call.unique_id:
            self.unsolicited += 1
            return Unsolicited(frame.log)
        self._in_flight = None  # one answer per call: a repeat is unsolicited
        return Reply(call, frame.payload, frame.error, frame.log)

    # --- the station's calls -------------------------------------------------------------

    def call(self, action: str, payload: dict[str, Any]) -> Outgoing:
        """Queue a CALL; `next_call` hands it out when no other is in flight."""
        unique_id = str(uuid.uuid4())  # unique beyond this connection, as the frame log wants
        text = wire.encode([2, unique_id, action, payload])
        outgoing = Outgoing(unique_id, action, payload, text)
        if self._waiting is None:
            self._waiting = []
        self._waiting.append(outgoing)
        return outgoing

    def next_call(self, now: float) -> Outgoing | None:
        """The next call to send (it is then in flight until ``now + timeout_s``), or None."""
        if self._in_flight is not None or not self._waiting:
            return None
        self._in_flight = self._waiting.pop(0)
        self._deadline = now + self.timeout_s
        return self._in_flight

    @property
    def deadline(self) -> float | None:
        """When the call in flight times out (None: no call in flight)."""
        return None if self._in_flight is None else self._deadline

    def expire(self, now: float) -> Outgoing | None:
        """The call in flight if its deadline has passed (no longer awaited), else None."""
        call = self._in_flight
        if call is None or now < self._deadline:
            return None
        self._in_flight = None
        return call

    def withdraw(self, unique_id: str) -> bool:
        """Drop a queued call before it is sent (its caller gave up); True if it was queued."""
        for i, waiting in enumerate(self._waiting or ()):
            if waiting.unique_id == unique_id:
                del self._waiting[i]  # type: ignore[union-attr]
                return True
        return False

    def close(self) -> list[Outgoing]:
        """Every call in flight or queued (none will be answered); the endpoint is empty."""
        calls = ([] if self._in_flight is None else [self._in_flight]) + (self._waiting or [])
        self._in_flight, self._waiting = None, None
        return calls

    # --- the station's answers -----------------------------------------------------------

    def result(self, unique_id: str, payload: dict[str, Any]) -> str:
        """The CALLRESULT text."""
        return wire.encode([3, unique_id, payload])

    def error(
        self, unique_id: str, code: str, description: str, details: dict[str, Any] | None = None
    ) -> tuple[list[Any], str]:
        """A CALLERROR's body (code spelt for the version, description cut) and its text."""
        body = [self._spelling.get(code, code), description[:MAX_DESCRIPTION], details or {}]
        return body, wire.encode([4, unique_id, *body])
