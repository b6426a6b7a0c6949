"""JSON for OCPP-J frames: orjson on the hot path, the stdlib where orjson says no.

Every frame in and out is parsed or written once (and its payload once more
for the frame log), so the codec is a measurable part of each message. orjson
refuses a few things the stdlib takes: integers past 64 bits and the
non-standard ``NaN`` / ``Infinity``. Parsing falls back to the stdlib then, so
such a frame meets the same schema checks and CALLERRORs as before; writing
falls back for integers the same way.

No OCPP message nests deeper than about ten levels; a frame nested past
`MAX_DEPTH` is refused like any other non-JSON (ValueError), before anything
walks it recursively (redaction, the stdlib's encoder) and runs out of stack.
The depth is only measured for a frame with more than `MAX_DEPTH` brackets.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

MAX_DEPTH = 32


def parse(frame: str | bytes) -> Any:
    """A frame's JSON; raises ValueError when it is not JSON."""
    try:
        value = orjson.loads(frame)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(frame)  # raises ValueError (JSONDecodeError) for non-JSON
        except RecursionError as exc:  # nested past the interpreter's stack
            raise ValueError("JSON nested too deeply") from exc
    if _brackets(frame) > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _brackets(frame: str | bytes) -> int:
    if isinstance(frame, bytes):
        return frame.count(b"[") + frame.count(b"{")
    return frame.count("[") + frame.count("{")


def _depth(value: Any) -> int:
    """How deep containers nest in ``value`` (without recursion; stops past MAX_DEPTH)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _number(value: Any) -> float:
    """A Decimal as the float that prints as it (the ocpp library's encoder rounds to 0.1)."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def encode(value: Any) -> str:
    """Compact JSON text of a frame or payload (a Decimal written as its float)."""
    try:
        return orjson.dumps(value, default=_number).decode()
    except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits
        return json.dumps(value, separators=(",", ":"), default=_number)
