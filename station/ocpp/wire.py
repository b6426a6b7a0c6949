"""JSON for OCPP-J frames: orjson on the hot path, the stdlib where orjson says no.

Every frame in and out is parsed or written once (and its payload once more
for the frame log), so the codec is a measurable part of each message. orjson
refuses a few things the stdlib takes: integers past 64 bits and the
non-standard ``NaN`` / ``Infinity``. Parsing falls back to the stdlib then, so
such a frame meets the same schema checks and CALLERRORs as before; writing
falls back for integers the same way. Nesting deeper than the stdlib's stack
allows is not JSON for us either: a ValueError, like any other non-JSON.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def parse(frame: str | bytes) -> Any:
    """A frame's JSON; raises ValueError when it is not JSON."""
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        try:
            return json.loads(frame)  # raises ValueError (JSONDecodeError) for non-JSON
        except RecursionError as exc:  # nested past the interpreter's stack: no OCPP frame
            raise ValueError("JSON nested too deeply") from exc


def encode(value: Any) -> str:
    """Compact JSON text of a frame or payload."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits
        return json.dumps(value, separators=(",", ":"))
