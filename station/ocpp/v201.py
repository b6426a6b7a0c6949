"""OCPP 2.0.1 adapter: translate 2.0.1 messages into domain events and back."""

from __future__ import annotations

import zlib
from decimal import Decimal
from typing import Any

from ocpp import v201
from ocpp.v201.enums import Action

from station.domain.cap import ChargingLimit
from station.domain.events import (
    ChargePointBooted,
    ConnectorStatusChanged,
    MeterValuesReported,
    OcppVersion,
    TransactionEnded,
    TransactionStarted,
)
from station.ocpp.connection import (
    CallErrorReply,
    OcppConnection,
    handles,
    now_iso,
    parse_time,
    wire_time,
)
from station.ocpp.ports import TransactionReply, TransactionStatus
from station.ocpp.readings import readings_2x, wire_cost

Payload = dict[str, Any]


def _token_info(accepted: bool) -> Payload:
    return {"status": "Accepted" if accepted else "Invalid"}


class V201Connection(OcppConnection):
    version = OcppVersion.V201
    known_actions = frozenset(a.value for a in Action)
    results = v201.call_result
    _call_module: Any = v201.call

    @handles(Action.boot_notification)
    async def on_boot_notification(self, p: Payload) -> Payload:
        station = p["chargingStation"]
        await self.events.charge_point_booted(
            ChargePointBooted(
                charge_point_id=self.charge_point_id,
                ocpp_version=self.version,
                vendor=station["vendorName"],
                model=station["model"],
                firmware_version=station.get("firmwareVersion"),
                serial_number=station.get("serialNumber"),
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
        await self.events.connector_status_changed(
            ConnectorStatusChanged(
                charge_point_id=self.charge_point_id,
                evse_id=p["evseId"],
                connector_id=p["connectorId"],
                status=p["connectorStatus"],
                timestamp=parse_time(p["timestamp"]),
            )
        )
        return {}

    @handles(Action.authorize)
    async def on_authorize(self, p: Payload) -> Payload:
        accepted = await self.events.authorize(self.charge_point_id, p["idToken"]["idToken"])
        return {"idTokenInfo": _token_info(accepted)}

    @handles(Action.transaction_event)
    async def on_transaction_event(self, p: Payload) -> Payload:
        info = p["transactionInfo"]
        ref: str = info["transactionId"]
        evse = p.get("evse") or {}
        token = (p.get("idToken") or {}).get("idToken")
        at = parse_time(p["timestamp"])
        readings = readings_2x(p.get("meterValue"), at=at)  # never refuse a transaction's life
        offline = bool(p.get("offline", False))
        kind = p["eventType"]
        if kind == "Started":
            reply = await self.events.transaction_started(
                TransactionStarted(
                    charge_point_id=self.charge_point_id,
                    evse_id=evse.get("id", 0),
                    connector_id=evse.get("connectorId", 1),
                    id_token=token,
                    timestamp=at,
                    transaction_ref=ref,
                    remote_start_id=info.get("remoteStartId"),
                    seq_no=p["seqNo"],
                    offline=offline,
                    readings=readings,
                )
            )
            return self._transaction_response(reply, token, info.get("remoteStartId"), True)
        if kind == "Updated":
            maybe = await self.events.meter_values(
                MeterValuesReported(
                    charge_point_id=self.charge_point_id,
                    evse_id=evse.get("id", 0),
                    transaction_ref=ref,
                    readings=readings,
                    timestamp=at,
                    seq_no=p["seqNo"],
                    offline=offline,
                )
            )
            if maybe is not None and token is not None:
                accepted = await self.events.authorize(self.charge_point_id, token)
                maybe = TransactionReply(
                    maybe.transaction_id, accepted, maybe.total_cost, maybe.max_cost
                )
            return self._transaction_response(maybe, token, None, False)
        if kind == "Ended":
            reply = await self.events.transaction_ended(
                TransactionEnded(
                    charge_point_id=self.charge_point_id,
                    transaction_ref=ref,
                    timestamp=at,
                    reason=info.get("stoppedReason"),
                    id_token=token,
                    seq_no=p["seqNo"],
                    offline=offline,
                    readings=readings,
                )
            )
            known = reply.transaction_id != 0
            return self._transaction_response(
                reply if known else None, token, None, False, ended=True
            )
        raise CallErrorReply(
            "PropertyConstraintViolation", f"eventType {kind!r}"
        )  # pragma: no cover

    def _transaction_response(
        self,
        reply: TransactionReply | None,
        token: str | None,
        remote_start_id: int | None,
        started: bool,
        *,
        ended: bool = False,
    ) -> Payload:
        """The TransactionEventResponse. ``totalCost`` goes only with Ended: the
        specification sends it only once charging has ended (running cost goes
        in CostUpdated)."""
        response: Payload = {}
        if reply is None:
            return response
        if token is not None:
            response["idTokenInfo"] = _token_info(reply.id_token_accepted)
        if ended and reply.total_cost is not None:
            response["totalCost"] = wire_cost(reply.total_cost)
        return response

    @handles(Action.meter_values)
    async def on_meter_values(self, p: Payload) -> Payload:
        await self.events.meter_values(
            MeterValuesReported(
                charge_point_id=self.charge_point_id,
                evse_id=p["evseId"],
                transaction_ref=None,
                readings=readings_2x(p["meterValue"]),
                timestamp=parse_time(None),
            )
        )
        return {}

    @handles(Action.notify_event)
    async def on_notify_event(self, p: Payload) -> Payload:
        return {}

    @handles(Action.notify_report)
    async def on_notify_report(self, p: Payload) -> Payload:
        return {}

    @handles(Action.security_event_notification)
    async def on_security_event_notification(self, p: Payload) -> Payload:
        self.log.warning("ocpp.security_event", event_type=p.get("type"))
        return {}

    @handles(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, p: Payload) -> Payload:
        return {}

    @handles(Action.log_status_notification)
    async def on_log_status_notification(self, p: Payload) -> Payload:
        return {}

    @handles(Action.data_transfer)
    async def on_data_transfer(self, p: Payload) -> Payload:
        return {"status": "UnknownVendorId"}

    # --- station-initiated -------------------------------------------------------------

    async def remote_start(self, *, evse_id: int, id_token: str, remote_start_id: int) -> bool:
        result = await self.request(
            self._call_module.RequestStartTransaction(
                id_token={"idToken": id_token, "type": "Central"},
                remote_start_id=remote_start_id,
                evse_id=evse_id,
            )
        )
        return bool(result.status == "Accepted")

    async def remote_stop(self, transaction_ref: str) -> bool:
        result = await self.request(
            self._call_module.RequestStopTransaction(transaction_id=transaction_ref)
        )
        return bool(result.status == "Accepted")

    def post_remote_stop(self, transaction_ref: str) -> None:
        self.post(self._call_module.RequestStopTransaction(transaction_id=transaction_ref))

    def post_charging_limit(self, transaction_ref: str, limit: ChargingLimit) -> None:
        """A TxProfile on the transaction: the limit until its time is up, then 0 W."""
        profile_id = zlib.crc32(transaction_ref.encode()) & 0x7FFFFFFF
        self.post(
            v201.call.SetChargingProfile(
                evse_id=limit.evse_id,
                charging_profile={
                    "id": profile_id,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxProfile",
                    "chargingProfileKind": "Absolute",
                    "transactionId": transaction_ref,
                    "chargingSchedule": [
                        {
                            "id": profile_id,
                            "startSchedule": wire_time(limit.starts_at),
                            "chargingRateUnit": "W",
                            "chargingSchedulePeriod": [
                                {"startPeriod": 0, "limit": float(int(limit.limit_w))},
                                {"startPeriod": int(limit.duration_s), "limit": 0.0},
                            ],
                        }
                    ],
                },
            )
        )

    def post_cost_updated(self, transaction_ref: str, total_cost: Decimal) -> None:
        self.post(
            self._call_module.CostUpdated(
                total_cost=wire_cost(total_cost), transaction_id=transaction_ref
            )
        )

    async def transaction_status(self, transaction_ref: str) -> TransactionStatus:
        result = await self.request(
            self._call_module.GetTransactionStatus(transaction_id=transaction_ref)
        )
        return TransactionStatus(
            ongoing=result.ongoing_indicator, messages_in_queue=bool(result.messages_in_queue)
        )

    async def trigger(self, requested_message: str, evse_id: int | None = None) -> bool:
        evse = {"id": evse_id} if evse_id is not None else None
        result = await self.request(
            self._call_module.TriggerMessage(requested_message=requested_message, evse=evse)
        )
        return bool(result.status == "Accepted")
