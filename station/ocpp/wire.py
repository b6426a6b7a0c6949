"""JSON for OCPP-J frames: orjson on the hot path, the stdlib where orjson says no.

Every frame in and out is parsed or written once (and its payload once more
for the frame log), so the codec is a measurable part of each message. orjson
refuses a few things the stdlib takes: integers past 64 bits and the
non-standard ``NaN`` / ``Infinity``. Parsing falls back to the stdlib then, so
such a frame meets the same schema checks and CALLERRORs as before; writing
falls back for integers the same way.
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
        return json.loads(frame)  # raises ValueError (JSONDecodeError) for non-JSON


def encode(value: Any) -> str:
    """Compact JSON text of a frame or payload."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits
        return json.dumps(value, separators=(",", ":"))
