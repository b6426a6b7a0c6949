"""`ChargePointCommands` for several nodes: here when the connection is here, else routed.

`ClusterCommands` is what the services get with PostgreSQL. A command for a
charge point connected to this node goes straight to this node's `Connections`; one
held by another node (a live lease) is written for that node
(`ClusterNode.call`) and its answer awaited, bounded by the OCPP call timeout
plus ``_MARGIN_S``; one connected nowhere fails at once (`station_unavailable`).
The ``post_*`` commands are queued for the holder and return at once.

`execute` is the holder's side: the same commands on its own `Connections`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from station.cluster.node import ClusterNode
from station.domain.cap import ChargingLimit
from station.ocpp.connections import Connections
from station.ocpp.ports import TransactionStatus

_MARGIN_S = 2.0


class ClusterCommands:
    def __init__(self, local: Connections, node: ClusterNode, call_timeout_s: float) -> None:
        self.local = local
        self.node = node
        self.timeout_s = call_timeout_s + _MARGIN_S

    def is_connected(self, charge_point_id: str) -> bool:
        """Connected to this node or to another live one."""
        here = self.local.is_connected(charge_point_id)
        return here or self.node.holder(charge_point_id) is not None

    def is_connected_here(self, charge_point_id: str) -> bool:
        """Connected to this node."""
        return self.local.is_connected(charge_point_id)

    def ocpp_version(self, charge_point_id: str) -> str | None:
        version = self.local.ocpp_version(charge_point_id)
        if version is not None:
            return version
        lease = self.node.holder(charge_point_id)
        return None if lease is None else lease.ocpp_version

    async def start_transaction(
        self,
        charge_point_id: str,
        *,
        evse_id: int,
        id_token: str,
        remote_start_id: int,
        max_cost: Decimal | None = None,
    ) -> bool:
        if self.local.is_connected(charge_point_id):
            return await self.local.start_transaction(
                charge_point_id,
                evse_id=evse_id,
                id_token=id_token,
                remote_start_id=remote_start_id,
                max_cost=max_cost,
            )
        args = {
            "evse_id": evse_id,
            "id_token": id_token,
            "remote_start_id": remote_start_id,
            "max_cost": None if max_cost is None else str(max_cost),
        }
        return bool(await self._call(charge_point_id, "start_transaction", args))

    async def stop_transaction(self, charge_point_id: str, transaction_ref: str) -> bool:
        if self.local.is_connected(charge_point_id):
            return await self.local.stop_transaction(charge_point_id, transaction_ref)
        args = {"transaction_ref": transaction_ref}
        return bool(await self._call(charge_point_id, "stop_transaction", args))

    async def transaction_status(
        self, charge_point_id: str, transaction_ref: str
    ) -> TransactionStatus | None:
        if self.local.is_connected(charge_point_id):
            return await self.local.transaction_status(charge_point_id, transaction_ref)
        args = {"transaction_ref": transaction_ref}
        doc = await self._call(charge_point_id, "transaction_status", args)
        if doc is None:
            return None
        return TransactionStatus(
            ongoing=doc["ongoing"], messages_in_queue=bool(doc["messages_in_queue"])
        )

    async def trigger_message(
        self, charge_point_id: str, requested_message: str, evse_id: int | None = None
    ) -> bool:
        if self.local.is_connected(charge_point_id):
            return await self.local.trigger_message(charge_point_id, requested_message, evse_id)
        args = {"requested_message": requested_message, "evse_id": evse_id}
        return bool(await self._call(charge_point_id, "trigger_message", args))

    def post_stop_transaction(self, charge_point_id: str, transaction_ref: str) -> None:
        if self.local.is_connected(charge_point_id):
            self.local.post_stop_transaction(charge_point_id, transaction_ref)
        else:
            self.node.post(
                charge_point_id, "post_stop_transaction", {"transaction_ref": transaction_ref}
            )

    def post_cost_updated(
        self, charge_point_id: str, transaction_ref: str, total_cost: Decimal
    ) -> None:
        if self.local.is_connected(charge_point_id):
            self.local.post_cost_updated(charge_point_id, transaction_ref, total_cost)
        else:
            args = {"transaction_ref": transaction_ref, "total_cost": str(total_cost)}
            self.node.post(charge_point_id, "post_cost_updated", args)

    def post_charging_limit(
        self, charge_point_id: str, transaction_ref: str, limit: ChargingLimit
    ) -> None:
        if self.local.is_connected(charge_point_id):
            self.local.post_charging_limit(charge_point_id, transaction_ref, limit)
        else:
            args = {"transaction_ref": transaction_ref, **_limit_args(limit)}
            self.node.post(charge_point_id, "post_charging_limit", args)

    async def _call(self, charge_point_id: str, command: str, args: dict[str, Any]) -> Any:
        return await self.node.call(charge_point_id, command, args, self.timeout_s)


async def execute(local: Connections, charge_point_id: str, command: str, args: Any) -> Any:
    """Run a routed command on this node's connection (the holder's side); JSON out."""
    cp = charge_point_id
    if command == "start_transaction":
        max_cost = args.get("max_cost")
        return await local.start_transaction(
            cp,
            evse_id=int(args["evse_id"]),
            id_token=str(args["id_token"]),
            remote_start_id=int(args["remote_start_id"]),
            max_cost=None if max_cost is None else Decimal(max_cost),
        )
    if command == "stop_transaction":
        return await local.stop_transaction(cp, str(args["transaction_ref"]))
    if command == "transaction_status":
        status = await local.transaction_status(cp, str(args["transaction_ref"]))
        if status is None:
            return None
        return {"ongoing": status.ongoing, "messages_in_queue": status.messages_in_queue}
    if command == "trigger_message":
        evse = args.get("evse_id")
        return await local.trigger_message(
            cp, str(args["requested_message"]), None if evse is None else int(evse)
        )
    if command == "post_stop_transaction":
        local.post_stop_transaction(cp, str(args["transaction_ref"]))
        return None
    if command == "post_cost_updated":
        local.post_cost_updated(cp, str(args["transaction_ref"]), Decimal(args["total_cost"]))
        return None
    if command == "post_charging_limit":
        limit = ChargingLimit(
            evse_id=int(args["evse_id"]),
            limit_w=Decimal(args["limit_w"]),
            starts_at=datetime.fromisoformat(str(args["starts_at"])),
            duration_s=Decimal(args["duration_s"]),
        )
        local.post_charging_limit(cp, str(args["transaction_ref"]), limit)
        return None
    raise ValueError(f"unknown command {command!r}")


def _limit_args(limit: ChargingLimit) -> dict[str, Any]:
    return {
        "evse_id": limit.evse_id,
        "limit_w": str(limit.limit_w),
        "starts_at": limit.starts_at.isoformat(),
        "duration_s": str(limit.duration_s),
    }
