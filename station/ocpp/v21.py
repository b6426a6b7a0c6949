"""OCPP 2.1 adapter: 2.0.1's messages, plus the cost limit the charge point enforces.

2.1 lets the station hand the charge point a ``transactionLimit.maxCost`` in
the TransactionEventResponse; the charge point stops by itself when the
running cost reaches it. The limit comes from billing (``Billing.max_cost``)
or from a remote start that named one (`CentralSystem.start_transaction`
with ``max_cost``, matched by ``remoteStartId``).

2.1 also adds periodic event streams: the charge point opens one
(OpenPeriodicEventStream, a CALL) for a variable monitor, then sends its
samples as NotifyPeriodicEventStream SENDs, which are never answered. Each
sample is stored like a meter value of no transaction, dated ``basetime + t``,
its measurand ``Monitor.<variableMonitoringId>`` (``Stream.<id>`` for a
stream opened before this connection).
"""

from __future__ import annotations

from typing import Any

from ocpp import v21
from ocpp.v21.enums import Action

from station.domain.cap import ChargingLimit
from station.domain.events import MeterValuesReported, OcppVersion
from station.ocpp.connection import handles, parse_time
from station.ocpp.ports import TransactionReply
from station.ocpp.readings import readings_stream, wire_cost
from station.ocpp.v201 import V201Connection

Payload = dict[str, Any]


class V21Connection(V201Connection):
    version = OcppVersion.V21
    # NotifyPeriodicEventStream is a SEND, so the library's Action enum leaves it out.
    known_actions = frozenset(a.value for a in Action) | {"NotifyPeriodicEventStream"}
    results = v21.call_result
    _call_module: Any = v21.call

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stream_measurands: dict[int, str] = {}

    def post_charging_limit(self, transaction_ref: str, limit: ChargingLimit) -> None:
        """None on 2.1: the charge point enforces the cap itself (maxCost, CostUpdated)."""

    @handles(Action.open_periodic_event_stream)
    async def on_open_periodic_event_stream(self, p: Payload) -> Payload:
        stream = p["constantStreamData"]
        self._stream_measurands[stream["id"]] = f"Monitor.{stream['variableMonitoringId']}"
        return {"status": "Accepted"}

    @handles(Action.close_periodic_event_stream)
    async def on_close_periodic_event_stream(self, p: Payload) -> Payload:
        self._stream_measurands.pop(p["id"], None)
        return {}

    @handles("NotifyPeriodicEventStream")
    async def on_notify_periodic_event_stream(self, p: Payload) -> None:
        """A SEND: the stream's samples, stored like meter values (no answer goes back)."""
        measurand = self._stream_measurands.get(p["id"], f"Stream.{p['id']}")
        await self.events.meter_values(
            MeterValuesReported(
                charge_point_id=self.charge_point_id,
                evse_id=0,
                transaction_ref=None,
                readings=readings_stream(p["data"], parse_time(p["basetime"]), measurand),
                timestamp=parse_time(None),
            )
        )

    def _transaction_response(
        self,
        reply: TransactionReply | None,
        token: str | None,
        remote_start_id: int | None,
        started: bool,
        *,
        ended: bool = False,
    ) -> Payload:
        response = super()._transaction_response(
            reply, token, remote_start_id, started, ended=ended
        )
        if reply is None:
            return response
        max_cost = reply.max_cost
        if started and remote_start_id is not None:
            asked = self.limits.pop((self.charge_point_id, remote_start_id), None)
            if asked is not None:
                max_cost = asked if max_cost is None else min(max_cost, asked)
        if max_cost is not None:
            response["transactionLimit"] = {"maxCost": wire_cost(max_cost)}
        return response
