"""OCPP 2.1 adapter: 2.0.1's messages, plus the cost limit the charge point enforces.

2.1 lets the station hand the charge point a ``transactionLimit.maxCost`` in
the TransactionEventResponse; the charge point stops by itself when the
running cost reaches it. The limit comes from billing (``Billing.max_cost``)
or from a remote start that named one (`CentralSystem.start_transaction`
with ``max_cost``, matched by ``remoteStartId``).
"""

from __future__ import annotations

from typing import Any

from ocpp import v21
from ocpp.v21.enums import Action

from station.domain.events import OcppVersion
from station.ocpp.ports import TransactionReply
from station.ocpp.readings import wire_cost
from station.ocpp.v201 import V201Connection

Payload = dict[str, Any]


class V21Connection(V201Connection, v21.ChargePoint):  # type: ignore[misc]
    version = OcppVersion.V21
    known_actions = frozenset(a.value for a in Action)
    _call_module: Any = v21.call
    _call_result = v21.call_result
    _ocpp_version = "2.1"

    def _transaction_response(
        self,
        reply: TransactionReply | None,
        token: str | None,
        remote_start_id: int | None,
        started: bool,
    ) -> Payload:
        response = super()._transaction_response(reply, token, remote_start_id, started)
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
