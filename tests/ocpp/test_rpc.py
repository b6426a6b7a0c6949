"""Frames classified without I/O (`station.ocpp.rpc`): what each one is, per version."""

from __future__ import annotations

import json
from typing import Any

import pytest

from station.domain.events import OcppVersion
from station.ocpp import rpc

V16, V201, V21 = OcppVersion.V16, OcppVersion.V201, OcppVersion.V21


def classify(frame: list[Any] | str, version: OcppVersion = V201) -> rpc.Frame:
    return rpc.classify(frame if isinstance(frame, str) else json.dumps(frame), version)


def test_a_call_with_a_null_payload_is_a_call_with_an_empty_one() -> None:
    frame = classify([2, "c1", "Heartbeat", None])

    assert isinstance(frame, rpc.Call) and frame.payload == {}


@pytest.mark.parametrize("version", [V16, V201, V21])
def test_answers_are_answers_on_every_version(version: OcppVersion) -> None:
    result = classify([3, "a1", {"status": "Accepted"}], version)
    error = classify([4, "a2", "NotSupported", "no", {}], version)

    assert isinstance(result, rpc.Answer) and result.error is None
    assert isinstance(error, rpc.Answer) and error.error == ("NotSupported", "no", {})


def test_message_types_each_version_knows() -> None:
    assert isinstance(classify([6, "s", "Heartbeat", {}], V16), rpc.Ignored)
    assert isinstance(classify([6, "s", "Heartbeat", {}], V21), rpc.Send)
    assert isinstance(classify([5, "e", "FormatViolation", "x", {}], V21), rpc.ResultError)
    for version, kind in ((V201, 5), (V201, 6), (V21, 7)):
        refused = classify([kind, "m", "Heartbeat", {}], version)
        assert isinstance(refused, rpc.Refused) and refused.code == "MessageTypeNotSupported"


def test_a_send_is_never_refused_out_loud() -> None:
    assert isinstance(classify([6, "x" * 37, "Heartbeat", {}], V21), rpc.Ignored)
    assert isinstance(classify([6, "s", "Heartbeat", {"v": "\ud800"}], V21), rpc.Ignored)


@pytest.mark.parametrize(
    "payload",
    [{"a": "\ud800"}, {"a": ["ok", {"b": "\x00"}]}, {"\udfff": 1}, {"connectorId": 2**31},
     {"evse": {"id": -(2**31) - 1}}, {"seqNo": 1e10}, {"meterStart": 10**20},
     {"meterStop": -(10**15)}],
)  # fmt: skip
def test_a_payload_no_column_can_take_is_a_property_constraint_violation(
    payload: dict[str, Any],
) -> None:
    frame = classify([2, "c1", "DataTransfer", payload])

    assert isinstance(frame, rpc.Refused) and frame.code == "PropertyConstraintViolation"
    assert frame.unique_id == "c1"
    assert rpc.is_storable(json.dumps(frame.log.payload, ensure_ascii=False))  # log escaped


def test_integers_inside_32_bits_and_big_numbers_elsewhere_pass() -> None:
    payload = {"connectorId": 2**31 - 1, "meterStart": 10**15 - 1, "evseId": -(2**31),
               "value": 10**30}  # fmt: skip

    assert isinstance(classify([2, "c1", "X", payload]), rpc.Call)


@pytest.mark.parametrize("unique_id", ["x" * 37, "\ud800", "a\x00", ""])
def test_a_message_id_that_cannot_be_one_is_refused_with_id_minus_one(unique_id: str) -> None:
    frame = classify([2, unique_id, "Heartbeat", {}])

    assert isinstance(frame, rpc.Refused)
    assert (frame.unique_id, frame.code) == ("-1", "RpcFrameworkError")
    assert rpc.is_storable(frame.log.unique_id) and len(frame.log.unique_id) <= 64


def test_storable_text_escapes_only_what_needs_it() -> None:
    assert rpc.storable_text("plain é") == "plain é"
    assert rpc.storable_text("a\ud800b\x00") == "a\\ud800b\\x00"
