"""The charge points connected to this node, and the commands the services send them.

`Connections` is built first by the composition root (`station.bootstrap`),
before the services and the listener: the services get it as their
`station.services.ports.ChargePointCommands` (on one node; with several,
`station.cluster.commands.ClusterCommands` wraps it), the listener
(`station.ocpp.server.CentralSystem`) registers each authenticated
connection in it, and the cluster node closes a connection whose lease
another node took (`drop`). So nothing of the OCPP side needs a service at
construction, and no service needs the listener: the cycle the listener,
charging, billing and the commands would otherwise make is cut here.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from station.domain.cap import ChargingLimit
from station.errors import ChargePointNotConnected
from station.logs import get_logger
from station.ocpp.connection import OcppConnection
from station.ocpp.ports import TransactionStatus
from station.store.db import Database

_log = get_logger(__name__)


class Connections:
    """The live connection of each charge point here (``ChargePointCommands``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_id: dict[str, OcppConnection] = {}
        self._epochs: dict[str, int] = {}  # the lease epoch of each connection here
        # The 2.1 cost limit of each remote start, read by the connection that starts it.
        self.limits: dict[tuple[str, int], Decimal] = {}

    # --- the registry (the listener's side) ---------------------------------------------

    def count(self) -> int:
        """How many charge points are connected here (no ``__len__``: an empty registry
        must not be falsy where code asks ``if commands``)."""
        return len(self._by_id)

    def __contains__(self, charge_point_id: str) -> bool:
        return charge_point_id in self._by_id

    def get(self, charge_point_id: str) -> OcppConnection | None:
        return self._by_id.get(charge_point_id)

    def add(self, charge_point_id: str, connection: OcppConnection) -> OcppConnection | None:
        """Register the newest authenticated connection; the one it replaces, if any."""
        previous = self._by_id.get(charge_point_id)
        self._by_id[charge_point_id] = connection
        return previous

    def is_current(self, charge_point_id: str, connection: OcppConnection) -> bool:
        """Is `connection` still the registered one for this charge point?"""
        return self._by_id.get(charge_point_id) is connection

    def set_epoch(self, charge_point_id: str, connection: OcppConnection, epoch: int) -> None:
        """Its lease epoch, if `connection` is still the registered one."""
        if self.is_current(charge_point_id, connection):
            self._epochs[charge_point_id] = epoch

    def remove(self, charge_point_id: str, connection: OcppConnection) -> None:
        """Forget `connection` if it is still the registered one."""
        if self.is_current(charge_point_id, connection):
            del self._by_id[charge_point_id]
            self._epochs.pop(charge_point_id, None)

    def drop(self, charge_point_id: str, epoch: int, reason: str) -> None:
        """Close the connection holding ``epoch`` (its lease went to another node)."""
        connection = self._by_id.get(charge_point_id)
        if connection is None or self._epochs.get(charge_point_id, epoch) > epoch:
            return
        _log.warning("ocpp.connection_taken_over", charge_point_id=charge_point_id, reason=reason)
        del self._by_id[charge_point_id]
        self._epochs.pop(charge_point_id, None)
        task = asyncio.ensure_future(connection.websocket.close(1000, reason[:120]))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # --- ChargePointCommands -----------------------------------------------------------

    def is_connected(self, charge_point_id: str) -> bool:
        return charge_point_id in self._by_id

    def is_connected_here(self, charge_point_id: str) -> bool:
        return charge_point_id in self._by_id  # one node: here is everywhere

    def ocpp_version(self, charge_point_id: str) -> str | None:
        connection = self._by_id.get(charge_point_id)
        return None if connection is None else str(connection.version)

    def _connection(self, charge_point_id: str) -> OcppConnection:
        connection = self._by_id.get(charge_point_id)
        if connection is None:
            raise ChargePointNotConnected(f"{charge_point_id} is not connected to this node")
        return connection

    async def start_transaction(
        self,
        charge_point_id: str,
        *,
        evse_id: int,
        id_token: str,
        remote_start_id: int,
        max_cost: Decimal | None = None,
    ) -> bool:
        connection = self._connection(charge_point_id)
        if max_cost is not None:
            self.limits[(charge_point_id, remote_start_id)] = max_cost
        accepted = await connection.remote_start(
            evse_id=evse_id, id_token=id_token, remote_start_id=remote_start_id
        )
        if not accepted:
            self.limits.pop((charge_point_id, remote_start_id), None)
        await self._audit(
            charge_point_id,
            "ocpp.start_transaction",
            {"evse_id": evse_id, "remote_start_id": remote_start_id, "accepted": accepted},
        )
        return accepted

    async def stop_transaction(self, charge_point_id: str, transaction_ref: str) -> bool:
        accepted = await self._connection(charge_point_id).remote_stop(transaction_ref)
        await self._audit(
            charge_point_id,
            "ocpp.stop_transaction",
            {"transaction_ref": transaction_ref, "accepted": accepted},
        )
        return accepted

    def post_stop_transaction(self, charge_point_id: str, transaction_ref: str) -> None:
        connection = self._by_id.get(charge_point_id)
        if connection is None:
            _log.warning("ocpp.stop_not_sent", charge_point_id=charge_point_id)
            return
        connection.post_remote_stop(transaction_ref)

    def post_cost_updated(
        self, charge_point_id: str, transaction_ref: str, total_cost: Decimal
    ) -> None:
        connection = self._by_id.get(charge_point_id)
        if connection is not None:
            connection.post_cost_updated(transaction_ref, total_cost)

    def post_charging_limit(
        self, charge_point_id: str, transaction_ref: str, limit: ChargingLimit
    ) -> None:
        connection = self._by_id.get(charge_point_id)
        if connection is not None:
            connection.post_charging_limit(transaction_ref, limit)

    async def transaction_status(
        self, charge_point_id: str, transaction_ref: str
    ) -> TransactionStatus | None:
        """GetTransactionStatus on 2.x; None on 1.6 (no such message)."""
        return await self._connection(charge_point_id).transaction_status(transaction_ref)

    async def trigger_message(
        self, charge_point_id: str, requested_message: str, evse_id: int | None = None
    ) -> bool:
        return await self._connection(charge_point_id).trigger(requested_message, evse_id)

    async def _audit(self, charge_point_id: str, action: str, data: dict[str, Any]) -> None:
        from station.store import audit

        try:
            async with self.db.session() as session:
                await audit.record(
                    session, actor="system", action=action, subject=charge_point_id, data=data
                )
        except Exception:
            _log.exception("ocpp.audit_failed", charge_point_id=charge_point_id, action=action)
