"""Log lines: JSON without uvicorn's ANSI `color_message`; text with a timestamp."""

from __future__ import annotations

import json
import logging
import re

from station.logs import JsonFormatter, KeyValueFormatter


def _uvicorn_record() -> logging.LogRecord:
    # What uvicorn logs at start-up: its message, and the same with colour codes.
    return logging.makeLogRecord(
        {
            "name": "uvicorn.error",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "Started server process [%d]",
            "args": (4242,),
            "color_message": "Started server process [\x1b[36m%d\x1b[0m]",
            "created": 1_800_000_000.25,
        }
    )


def test_json_lines_carry_no_color_message_and_no_ansi() -> None:
    line = JsonFormatter().format(_uvicorn_record())

    assert "color_message" not in json.loads(line)
    assert "\x1b" not in line and "\\u001b" not in line
    assert json.loads(line)["event"] == "Started server process [4242]"


def test_text_lines_start_with_a_utc_timestamp() -> None:
    line = KeyValueFormatter().format(_uvicorn_record())

    assert re.match(
        r"^2027-01-15T08:00:00\.250\+00:00 info +Started server process \[4242\]$", line
    )
