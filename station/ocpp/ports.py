"""What the OCPP adapters need from the rest of the station (owned by them).

Every adapter, whatever its version, turns its messages into the events of
`station.domain.events` and hands them to a `ChargingEvents`; the replies
carry what the adapter must put into its response. Implementations must not
await a station-initiated OCPP call while handling one of these (the ocpp
library would deadlock): they queue such calls instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from station.domain.events import (
    ChargePointBooted,
    ConnectorStatusChanged,
    MeterValuesReported,
    TransactionEnded,
    TransactionStarted,
)


@dataclass(frozen=True, slots=True)
class TransactionReply:
    # The station's own transaction id (1.6 `transactionId`).
    transaction_id: int
    id_token_accepted: bool = True
    # Running cost so far, major units (2.x `totalCost`); None when unpriced.
    total_cost: Decimal | None = None
    # Cap for the charge point to enforce itself (2.1 `transactionLimit.maxCost`).
    max_cost: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TransactionStatus:
    """A charge point's answer to GetTransactionStatus (2.x)."""

    # Whether the transaction is still going on (None: the charge point does not know it).
    ongoing: bool | None
    # Whether messages of the transaction still wait in the charge point's queue.
    messages_in_queue: bool


class ChargingEvents(Protocol):
    async def charge_point_connected(self, charge_point_id: str, ocpp_version: str) -> None: ...

    async def charge_point_disconnected(self, charge_point_id: str) -> None: ...

    async def charge_point_moved(self, charge_point_id: str) -> None:
        """Its connection here ended and another node holds it now: forget, record nothing."""
        ...

    async def charge_point_booted(self, event: ChargePointBooted) -> None: ...

    async def connector_status_changed(self, event: ConnectorStatusChanged) -> None: ...

    async def authorize(self, charge_point_id: str, id_token: str) -> bool: ...

    async def transaction_started(self, event: TransactionStarted) -> TransactionReply: ...

    async def meter_values(self, event: MeterValuesReported) -> TransactionReply | None: ...

    async def transaction_ended(self, event: TransactionEnded) -> TransactionReply: ...
