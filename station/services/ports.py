"""What the services need from the OCPP side (owned by the services).

`station.ocpp.server.CentralSystem` implements it. The awaitable commands
wait for the charge point's answer (bounded by the OCPP call timeout) and
must never be awaited from inside an OCPP event handler; the ``post_*``
variants queue the call on the connection's own task and return at once,
which is what a handler uses.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol


class ChargePointCommands(Protocol):
    def is_connected(self, charge_point_id: str) -> bool: ...

    def ocpp_version(self, charge_point_id: str) -> str | None: ...

    async def start_transaction(
        self,
        charge_point_id: str,
        *,
        evse_id: int,
        id_token: str,
        remote_start_id: int,
        max_cost: Decimal | None = None,
    ) -> bool:
        """RemoteStartTransaction (1.6) / RequestStartTransaction (2.x); True if Accepted.

        Raises ChargePointNotConnected or ChargePointTimeout.
        """
        ...

    async def stop_transaction(self, charge_point_id: str, transaction_ref: str) -> bool:
        """RemoteStopTransaction (1.6) / RequestStopTransaction (2.x); True if Accepted."""
        ...

    def post_stop_transaction(self, charge_point_id: str, transaction_ref: str) -> None:
        """Queue a stop on the connection's task; safe inside a handler; never raises."""
        ...

    def post_cost_updated(
        self, charge_point_id: str, transaction_ref: str, total_cost: Decimal
    ) -> None:
        """Queue a CostUpdated (2.x; a no-op on 1.6); safe inside a handler."""
        ...
