"""What the services need from the OCPP side (owned by the services).

`station.ocpp.server.CentralSystem` implements it. The awaitable commands
wait for the charge point's answer (bounded by the OCPP call timeout) and
must never be awaited from inside an OCPP event handler; the ``post_*``
variants queue the call on the connection's own task and return at once,
which is what a handler uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from station.domain.cap import ChargingLimit
from station.domain.session import Session
from station.domain.session_actions import RecordAnomaly
from station.ocpp.ports import TransactionStatus


class ChargePointCommands(Protocol):
    def is_connected(self, charge_point_id: str) -> bool:
        """Connected to this node or, with several nodes, to any live one."""
        ...

    def is_connected_here(self, charge_point_id: str) -> bool:
        """Connected to this very node (on a single node: the same as is_connected)."""
        ...

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

    async def transaction_status(
        self, charge_point_id: str, transaction_ref: str
    ) -> TransactionStatus | None:
        """GetTransactionStatus (2.x); None on 1.6, which has no such message.

        Raises ChargePointNotConnected, ChargePointTimeout or StationUnavailable.
        """
        ...

    def post_stop_transaction(self, charge_point_id: str, transaction_ref: str) -> None:
        """Queue a stop on the connection's task; safe inside a handler; never raises."""
        ...

    def post_cost_updated(
        self, charge_point_id: str, transaction_ref: str, total_cost: Decimal
    ) -> None:
        """Queue a CostUpdated (2.x; a no-op on 1.6); safe inside a handler."""
        ...

    def post_charging_limit(
        self, charge_point_id: str, transaction_ref: str, limit: ChargingLimit
    ) -> None:
        """Queue a SetChargingProfile (1.6 and 2.0.1: a TxProfile on the running
        transaction) holding it to `limit`; a no-op on 2.1 (which has maxCost) and for
        a charge point not connected; safe inside a handler; never raises."""
        ...


@dataclass(frozen=True, slots=True)
class TransactionView:
    """A transaction as stored, after the event that changed it was committed."""

    transaction_id: int
    charge_point_id: str
    transaction_ref: str
    evse_id: int
    id_token: str | None
    started_at: datetime
    meter_start_wh: Decimal | None
    # Energy delivered so far, from validated register readings only.
    energy_wh: Decimal
    last_reading_at: datetime | None
    ended: bool
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    # Average power over the latest sample interval, when known.
    power_w: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Billing:
    """What billing wants the charge point to hear about a transaction."""

    total_cost: Decimal | None = None
    max_cost: Decimal | None = None
    id_token_accepted: bool = True


class ReadingSessions(Protocol):
    """The sessions billing reads and writes inside a reading's writer unit.

    Implemented by the store (`station.store.readings.UnitSessions`) over the
    unit's connection: what it stages commits with the reading, or not at all.
    """

    def by_id_token(self, id_token: str) -> Session | None:
        """The session of ``id_token``, locked until the unit commits."""
        ...

    def save_reading(self, session: Session) -> None:
        """Write what a reading changed on the session (metering, cost, status, stop)."""
        ...

    def add_anomaly(self, charge_point_id: str, anomaly: RecordAnomaly) -> None: ...


class TransactionListener(Protocol):
    """Billing's hook into charging (implemented by the payments side).

    `bill` runs inside the writer unit that stores the transaction's change,
    so the reading and its billing commit together (one transaction, shared
    with the batch) or not at all. It must only read and stage through
    ``sessions`` (the unit may run more than once); what it returns is run
    once the unit committed, from inside the OCPP handler: it must not await
    station-initiated OCPP calls (use the ``post_*`` commands) and should be
    quick.
    """

    async def id_token_accepted(self, charge_point_id: str, id_token: str) -> bool | None:
        """True/False for a session's token; None when the token is not a session's."""
        ...

    def bill(
        self, sessions: ReadingSessions, transaction: TransactionView
    ) -> Callable[[], Billing]:
        """Inside the unit: decide and stage; return what to do after the commit."""
        ...

    async def charge_point_connected(self, charge_point_id: str) -> None:
        """A charge point (re)connected: send it what it is owed (a stop not delivered)."""
        ...
