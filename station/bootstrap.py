"""The composition root: the one place the station's object graph is built.

`build(settings)` builds every adapter and service through its constructor,
in dependency order, and hands back the frozen `Parts` that `station.app.Station`
runs; nothing is attached to an object after it is built. The order:

1. the database, the metrics and the group-commit writer;
2. `Connections`, the registry of this node's OCPP connections, which is the
   services' `ChargePointCommands` on one node (with several, on PostgreSQL,
   the `ClusterNode` and its `ClusterCommands` wrap it). It needs nothing
   of the services nor of the listener, and so cuts the cycle
   listener → charging → billing → commands → listener;
3. the payment gateway (Stripe unless one is given, always inside a
   `TimedGateway` that counts and times its calls), then the payments
   services: receipts before settlement (which puts the receipt on the
   final event), settlement before authorisation, billing and sessions;
4. charging (billing is its listener), the missing-ends sweeper, the OCPP
   listener (`CentralSystem`, which registers connections in step 2);
5. the kill switch and the API, which gets a frozen `Services` value, not
   the station.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.types import ASGIApp

from station.api.app import create_app
from station.api.dashboard_history import SessionHistory
from station.api.services import Services
from station.cluster.commands import ClusterCommands, execute
from station.cluster.node import ClusterNode
from station.logs import get_logger
from station.metrics import StationMetrics, bind_engine
from station.ocpp.connections import Connections
from station.ocpp.frame_log import FrameLog
from station.ocpp.server import CentralSystem
from station.payments.authorize import Authorizer
from station.payments.receipts import ReceiptSigner
from station.payments.stripe_gateway import StripeGateway
from station.payments.timed_gateway import TimedGateway
from station.services.authorisation import AuthorisationService
from station.services.billing import BillingListener
from station.services.charging import ChargingService
from station.services.gateway import PaymentGateway
from station.services.kill_switch import KillSwitch
from station.services.missing_ends import MissingEnds
from station.services.negotiations import NegotiationService
from station.services.ports import ChargePointCommands
from station.services.session_events import SessionEvents
from station.services.sessions import SessionReceipts, SessionService
from station.services.settlement import SettlementService
from station.services.unit_of_work import UnitOfWorkFactory
from station.settings import Settings
from station.store.db import Database
from station.store.unit_of_work import SqlUnitsOfWork
from station.store.writer import GroupCommitWriter

_log = get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Payments:
    """The payments side (issue 3): negotiation, MPP authorisation, billing, settlement,
    sessions. `run()` (owned by `Station.run`'s task group) runs the settlement worker
    and the reconciler; ``gateway.calls`` counts the gateway's calls by operation."""

    gateway: TimedGateway
    authorizer: Authorizer
    signer: ReceiptSigner
    events: SessionEvents
    settlement: SettlementService
    negotiations: NegotiationService
    authorisation: AuthorisationService
    billing: BillingListener
    receipts: SessionReceipts
    sessions: SessionService

    def stripe_calls(self) -> dict[str, int]:
        """Gateway calls so far, by operation (for benchmarks and tests)."""
        return dict(self.gateway.calls)

    async def run(self) -> None:
        """The settlement worker and the reconciler, until `stop()` or cancelled."""
        await self.settlement.run()

    def stop(self) -> None:
        """Let in-flight settlements finish and start no more; `run()` returns. Idempotent."""
        self.settlement.stop()


@dataclass(frozen=True, slots=True)
class Parts:
    """Every part of one station, wired; `station.app.Station` runs them."""

    settings: Settings
    db: Database
    units: UnitOfWorkFactory
    metrics: StationMetrics
    writer: GroupCommitWriter
    # This node's OCPP connections; `commands` routes to them across nodes with several.
    connections: Connections
    commands: ChargePointCommands
    cluster: ClusterNode | None
    payments: Payments
    charging: ChargingService
    missing_ends: MissingEnds
    central_system: CentralSystem
    kill_switch: KillSwitch
    session_history: SessionHistory
    services: Services
    api: ASGIApp


def build(
    settings: Settings,
    *,
    gateway: PaymentGateway | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Parts:
    """The parts of a station for these settings, every one wired; `Station(parts)`.

    ``gateway`` replaces the Stripe gateway (it is timed all the same);
    ``clock`` is the payments services' clock.
    """
    db = Database(settings.database_url)
    # The services' unit-of-work port on this database (station.services.unit_of_work).
    units = SqlUnitsOfWork(db)
    metrics = StationMetrics()
    # Code that holds only a database session finds its station's metrics by its engine.
    bind_engine(db.engine, metrics)
    writer = GroupCommitWriter(db, metrics=metrics)

    def session_entered(status: str) -> None:
        metrics.session_transitions.labels(status=status).inc()

    connections = Connections(db)
    cluster: ClusterNode | None = None
    commands: ChargePointCommands = connections
    events: SessionEvents
    if db.is_sqlite:
        events = SessionEvents(on_status=session_entered)
    else:
        # Several nodes on one PostgreSQL (station.cluster, docs/cluster.md): leases,
        # commands routed to the node holding the charge point, events stored for all.
        cluster = ClusterNode(
            settings,
            connections,
            executor=functools.partial(execute, connections),
            on_status=session_entered,
        )
        commands = ClusterCommands(connections, cluster, settings.ocpp_call_timeout_s)
        events = cluster.events

    timed = TimedGateway(gateway or _stripe(settings), metrics)
    payments = _payments(settings, db, units, commands, events, timed, clock)

    charging = ChargingService(
        db,
        writer,
        node_id=settings.node_id,
        listener=payments.billing,
        free_vend=settings.ocpp_free_vend,
    )
    missing_ends = MissingEnds(
        charging,
        commands,
        after_s=settings.ocpp_missing_end_after_s,
        interval_s=min(10.0, settings.ocpp_missing_end_after_s / 2),
    )
    central_system = CentralSystem(
        settings,
        db,
        charging,
        connections,
        frames=FrameLog(writer, metrics),
        ownership=cluster,
        metrics=metrics,
    )
    kill_switch = KillSwitch(units, payments.sessions, connections)
    # The dashboard chart's memory of recent sessions' meter points (station.api.dashboard).
    session_history = SessionHistory()
    ready, stopping = asyncio.Event(), asyncio.Event()
    services = Services(
        settings=settings,
        db=db,
        units=units,
        metrics=metrics,
        negotiations=payments.negotiations,
        authorisation=payments.authorisation,
        sessions=payments.sessions,
        receipts=payments.receipts,
        signer=payments.signer,
        events=payments.events,
        kill_switch=kill_switch,
        session_history=session_history,
        ready=ready,
        stopping=stopping,
    )
    return Parts(
        settings=settings,
        db=db,
        units=units,
        metrics=metrics,
        writer=writer,
        connections=connections,
        commands=commands,
        cluster=cluster,
        payments=payments,
        charging=charging,
        missing_ends=missing_ends,
        central_system=central_system,
        kill_switch=kill_switch,
        session_history=session_history,
        services=services,
        api=create_app(services),
    )


def _stripe(settings: Settings) -> StripeGateway:
    api_key = settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else ""
    return StripeGateway(
        api_key=api_key, api_base=settings.stripe_api_base, timeout_s=settings.stripe_timeout_s
    )


def _payments(
    settings: Settings,
    db: Database,
    units: UnitOfWorkFactory,
    commands: ChargePointCommands,
    events: SessionEvents,
    gateway: TimedGateway,
    clock: Callable[[], datetime],
) -> Payments:
    """Negotiation, MPP authorisation, billing, settlement and sessions (issue 3)."""
    if settings.secret_key is not None:
        secret = settings.secret_key.get_secret_value()
    else:
        _log.warning("payments.ephemeral_secret", reason="CHARGEPAY_SECRET_KEY not set")
        secret = secrets.token_urlsafe(32)
    authorizer = Authorizer(
        secret_key=secret,
        realm=settings.public_url or "chargepay",
        ttl_s=settings.challenge_ttl_s,
        network_id=settings.mpp_network_id,
        payment_method_types=tuple(settings.mpp_payment_method_types.split(",")),
        intents=tuple(settings.mpp_intents.split(",")),
    )
    signer = ReceiptSigner(secret)
    receipts = SessionReceipts(db, signer)
    settlement = SettlementService(
        db, settings, gateway, events, clock, commands, receipt_for=receipts.event
    )
    return Payments(
        gateway=gateway,
        authorizer=authorizer,
        signer=signer,
        events=events,
        settlement=settlement,
        negotiations=NegotiationService(units, settings, secret, clock),
        authorisation=AuthorisationService(
            db, settings, secret, authorizer, gateway, settlement, commands, clock, events
        ),
        billing=BillingListener(db, events, settlement, commands, clock),
        receipts=receipts,
        sessions=SessionService(db, events, settlement, receipts, commands, clock),
    )
