"""The frame codec: orjson, and the stdlib for what orjson refuses."""

from __future__ import annotations

import math

import pytest

from station.ocpp import wire


def test_frames_parse_and_encode_compactly() -> None:
    frame = '[2, "id-1", "Heartbeat", {"é": 1.5}]'

    assert wire.parse(frame) == wire.parse(frame.encode()) == [2, "id-1", "Heartbeat", {"é": 1.5}]
    assert wire.encode([3, "id-1", {"status": "Accepted"}]) == '[3,"id-1",{"status":"Accepted"}]'


def test_what_orjson_refuses_is_still_parsed_so_the_schema_can_answer_it() -> None:
    huge = 10**30  # past 64 bits: a constraint error for the schema check, not a non-JSON frame

    parsed = wire.parse(f'[2, "a", "MeterValues", {{"connectorId": {huge}, "x": NaN}}]')

    assert parsed[3]["connectorId"] == huge and math.isnan(parsed[3]["x"])
    assert wire.encode({"connectorId": huge}) == f'{{"connectorId":{huge}}}'


@pytest.mark.parametrize("frame", ["not json", b"\xff\xfe", "[1, 2", ""])
def test_non_json_raises_value_error(frame: str | bytes) -> None:
    with pytest.raises(ValueError):
        wire.parse(frame)


@pytest.mark.parametrize("depth", [wire.MAX_DEPTH + 1, 990, 100_000])
def test_nesting_past_max_depth_is_not_json(depth: int) -> None:
    frame = '[2,"a","DataTransfer",{"idTag":' + "[" * depth + "]" * depth + "}]"

    with pytest.raises(ValueError, match="nested"):
        wire.parse(frame)
    with pytest.raises(ValueError, match="nested"):
        wire.parse(frame.encode())


def test_ocpp_depths_and_brackets_inside_strings_are_accepted() -> None:
    nested = "[" * (wire.MAX_DEPTH - 1) + "]" * (wire.MAX_DEPTH - 1)
    brackets = "[{" * 100  # inside a string: no nesting at all

    assert wire.parse(f'[2,"a","DataTransfer",{{"data":"{brackets}"}}]')[3]["data"] == brackets
    assert wire.parse(f"{nested}") is not None
