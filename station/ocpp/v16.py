"""OCPP 1.6J adapter: translate 1.6 messages into domain events and back."""

from __future__ import annotations

import zlib
from decimal import Decimal
from typing import Any

from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from station.domain.cap import ChargingLimit
from station.domain.events import (
    ChargePointBooted,
    ConnectorStatusChanged,
    MeterValuesReported,
    OcppVersion,
    TransactionEnded,
    TransactionStarted,
)
from station.ocpp.connection import OcppConnection, handles, now_iso, parse_time, wire_time
from station.ocpp.readings import readings_16

Payload = dict[str, Any]


def _id_tag_info(accepted: bool) -> Payload:
    return {"status": "Accepted" if accepted else "Invalid"}


class V16Connection(OcppConnection):
    version = OcppVersion.V16
    known_actions = frozenset(a.value for a in Action)
    results = call_result

    @handles(Action.boot_notification)
    async def on_boot_notification(self, p: Payload) -> Payload:
        await self.events.charge_point_booted(
            ChargePointBooted(
                charge_point_id=self.charge_point_id,
                ocpp_version=self.version,
                vendor=p["chargePointVendor"],
                model=p["chargePointModel"],
                firmware_version=p.get("firmwareVersion"),
                serial_number=p.get("chargePointSerialNumber"),
            )
        )
        return {
            "status": "Accepted",
            "currentTime": now_iso(),
            "interval": self.heartbeat_interval_s,
        }

    @handles(Action.heartbeat)
    async def on_heartbeat(self, p: Payload) -> Payload:
        seen = getattr(self.events, "charge_point_seen", None)
        if seen is not None:
            seen(self.charge_point_id)
        return {"currentTime": now_iso()}

    @handles(Action.status_notification)
    async def on_status_notification(self, p: Payload) -> Payload:
        connector = p["connectorId"]
        await self.events.connector_status_changed(
            ConnectorStatusChanged(
                charge_point_id=self.charge_point_id,
                evse_id=connector,
                connector_id=connector,
                status=p["status"],
                timestamp=parse_time(p.get("timestamp")),
                error_code=p.get("errorCode"),
            )
        )
        return {}

    @handles(Action.authorize)
    async def on_authorize(self, p: Payload) -> Payload:
        accepted = await self.events.authorize(self.charge_point_id, p["idTag"])
        return {"idTagInfo": _id_tag_info(accepted)}

    @handles(Action.start_transaction)
    async def on_start_transaction(self, p: Payload) -> Payload:
        reply = await self.events.transaction_started(
            TransactionStarted(
                charge_point_id=self.charge_point_id,
                evse_id=p["connectorId"],
                connector_id=p["connectorId"],
                id_token=p["idTag"],
                timestamp=parse_time(p["timestamp"]),
                meter_start_wh=Decimal(p["meterStart"]),
            )
        )
        return {
            "transactionId": reply.transaction_id,
            "idTagInfo": _id_tag_info(reply.id_token_accepted),
        }

    @handles(Action.meter_values)
    async def on_meter_values(self, p: Payload) -> Payload:
        transaction_id = p.get("transactionId")
        now = parse_time(None)
        # A transaction's readings are retried until accepted: an unreadable one is an anomaly.
        readings = readings_16(p["meterValue"], at=None if transaction_id is None else now)
        await self.events.meter_values(
            MeterValuesReported(
                charge_point_id=self.charge_point_id,
                evse_id=p["connectorId"],
                transaction_ref=None if transaction_id is None else str(transaction_id),
                readings=readings,
                timestamp=now,
            )
        )
        return {}

    @handles(Action.stop_transaction)
    async def on_stop_transaction(self, p: Payload) -> Payload:
        at = parse_time(p["timestamp"])
        reply = await self.events.transaction_ended(
            TransactionEnded(
                charge_point_id=self.charge_point_id,
                transaction_ref=str(p["transactionId"]),
                timestamp=at,
                meter_stop_wh=Decimal(p["meterStop"]),
                reason=p.get("reason", "Local"),
                id_token=p.get("idTag"),
                readings=readings_16(p.get("transactionData"), at=at),
            )
        )
        if "idTag" in p:
            return {"idTagInfo": _id_tag_info(reply.id_token_accepted)}
        return {}

    @handles(Action.data_transfer)
    async def on_data_transfer(self, p: Payload) -> Payload:
        return {"status": "UnknownVendorId"}

    @handles(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, p: Payload) -> Payload:
        return {}

    @handles(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(self, p: Payload) -> Payload:
        return {}

    # --- station-initiated -------------------------------------------------------------

    async def remote_start(self, *, evse_id: int, id_token: str, remote_start_id: int) -> bool:
        result = await self.request(
            call.RemoteStartTransaction(id_tag=id_token, connector_id=evse_id)
        )
        return bool(result.status == "Accepted")

    async def remote_stop(self, transaction_ref: str) -> bool:
        result = await self.request(call.RemoteStopTransaction(transaction_id=int(transaction_ref)))
        return bool(result.status == "Accepted")

    def post_remote_stop(self, transaction_ref: str) -> None:
        self.post(call.RemoteStopTransaction(transaction_id=int(transaction_ref)))

    def post_charging_limit(self, transaction_ref: str, limit: ChargingLimit) -> None:
        """A TxProfile on the transaction: the limit until its time is up, then 0 W."""
        self.post(
            call.SetChargingProfile(
                connector_id=limit.evse_id,
                cs_charging_profiles={
                    "chargingProfileId": zlib.crc32(transaction_ref.encode()) & 0x7FFFFFFF,
                    "transactionId": int(transaction_ref),
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {
                        "startSchedule": wire_time(limit.starts_at),
                        "chargingRateUnit": "W",
                        "chargingSchedulePeriod": [
                            {"startPeriod": 0, "limit": float(int(limit.limit_w))},
                            {"startPeriod": int(limit.duration_s), "limit": 0.0},
                        ],
                    },
                },
            )
        )

    async def trigger(self, requested_message: str, evse_id: int | None = None) -> bool:
        result = await self.request(
            call.TriggerMessage(requested_message=requested_message, connector_id=evse_id)
        )
        return bool(result.status == "Accepted")
