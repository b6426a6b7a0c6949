"""Strings no column can take and integers past their column are refused at the OCPP
boundary, before anything is written; the frame's log row is stored escaped, the
connection goes on, and no one else's rows are lost (issue 15 item 1)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from station.app import Station
from station.store.charging import ChargePointRow, ConnectorRow, OcppMessageRow
from tests.ocpp.test_bad_input import ask, raw

BOOT_16 = {"chargePointVendor": "v", "chargePointModel": "m"}
STATUS_16 = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
CONSTRAINT = {"PropertyConstraintViolation", "FormatViolation", "FormationViolation"}


def refusals(station: Station) -> float:
    total = 0.0
    for metric in station.metrics.store_refusals.collect():
        total += sum(sample.value for sample in metric.samples if sample.name.endswith("_total"))
    return total


@pytest.mark.parametrize(
    ("version", "frame"),
    [
        pytest.param("ocpp1.6", [2, "b1", "BootNotification", {**BOOT_16, "chargePointModel":
                     "m\ud800"}], id="1.6-surrogate-in-a-string"),
        pytest.param("ocpp1.6", [2, "b1", "BootNotification", {**BOOT_16, "chargePointModel":
                     "m\x00"}], id="1.6-nul-in-a-string"),
        pytest.param("ocpp2.0.1", [2, "b1", "BootNotification", {"reason": "PowerUp",
                     "chargingStation": {"model": "\udfff", "vendorName": "v"}}],
                     id="2.0.1-surrogate-nested"),
        pytest.param("ocpp2.1", [2, "b1", "BootNotification", {"reason": "PowerUp",
                     "chargingStation": {"model": "m", "vendorName": "v\x00"}}], id="2.1-nul"),
        pytest.param("ocpp1.6", [2, "b1", "StatusNotification", {**STATUS_16, "connectorId":
                     2**63}], id="1.6-connector-past-64-bits"),
        pytest.param("ocpp1.6", [2, "b1", "StatusNotification", {**STATUS_16, "connectorId":
                     2**31}], id="1.6-connector-past-32-bits"),
        pytest.param("ocpp2.0.1", [2, "b1", "StatusNotification", {"timestamp":
                     "2026-01-01T00:00:00Z", "connectorStatus": "Available", "evseId": -(2**31)
                     - 1, "connectorId": 1}], id="2.0.1-evse-below-32-bits"),
        pytest.param("ocpp1.6", [2, "b1", "StartTransaction", {"connectorId": 1, "idTag": "T",
                     "meterStart": 10**20, "timestamp": "2026-01-01T00:00:00Z"}],
                     id="1.6-meter-start-past-its-column"),
        pytest.param("ocpp1.6", [2, "b1", "DataTransfer", {"vendorId": "v", "data": "x",
                     "\ud800": 1}], id="1.6-surrogate-in-a-key"),
    ],
)  # fmt: skip
async def test_an_unstorable_value_gets_a_constraint_error_and_nothing_is_written(
    station: Station, ocpp_url: str, version: str, frame: list[Any]
) -> None:
    async with await raw(ocpp_url, "CP-1", version) as ws:
        error = await ask(ws, frame)
        after = await ask(ws, [2, "hb", "Heartbeat", {}])
    await asyncio.sleep(0.3)  # log rows go with the next batch

    assert error[:2] == [4, "b1"] and error[2] in CONSTRAINT, error
    assert len(error[3]) <= 255
    assert after[:2] == [3, "hb"]
    async with station.db.reader() as session:
        vendor = await session.scalar(
            select(ChargePointRow.vendor).where(ChargePointRow.charge_point_id == "CP-1")
        )
        connectors = (await session.scalars(select(ConnectorRow))).all()
        logged = (
            await session.scalars(
                select(OcppMessageRow.message_id).where(OcppMessageRow.direction == "in")
            )
        ).all()
    assert vendor is None  # the boot was not applied
    assert connectors == []
    assert sorted(logged) == ["b1", "hb"]  # the refused frame's row too, escaped
    assert refusals(station) == 0


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
@pytest.mark.parametrize(
    ("unique_id", "escaped"),
    [("\ud800", "\\ud800"), ("a\x00b", "a\\x00b"), ("\udc00" * 40, ("\\udc00" * 40)[:64])],
    ids=["surrogate", "nul", "long-surrogates"],
)
async def test_an_unstorable_message_id_is_refused_and_its_log_row_is_stored_escaped(
    station: Station, ocpp_url: str, version: str, unique_id: str, escaped: str
) -> None:
    async with await raw(ocpp_url, "CP-1", version) as ws:
        error = await ask(ws, [2, unique_id, "Heartbeat", {}])
        unknown = await ask(ws, [2, "u1", "Make\ud800Coffee", {}])
        after = await ask(ws, [2, "hb", "Heartbeat", {}])
    await asyncio.sleep(0.3)

    assert error[0] == 4 and error[1] == "-1"
    assert error[2] == ("ProtocolError" if version == "ocpp1.6" else "RpcFrameworkError")
    assert unknown[:3] == [4, "u1", "NotImplemented"]
    assert after[:2] == [3, "hb"]
    async with station.db.reader() as session:
        rows = (
            await session.execute(
                select(OcppMessageRow.message_id, OcppMessageRow.action).where(
                    OcppMessageRow.direction == "in"
                )
            )
        ).all()
    assert sorted(tuple(row) for row in rows) == sorted(
        [(escaped, "Heartbeat"), ("u1", "Make\\ud800Coffee"), ("hb", "Heartbeat")]
    )
    assert refusals(station) == 0
