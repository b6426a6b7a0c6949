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
