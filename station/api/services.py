"""What the HTTP API works with: a frozen `Services` value, given to `create_app`.

The composition root (`station.bootstrap`) builds it; handlers reach it with
`services_of(request)` (a FastAPI dependency) and see only these services and
ports, never the station that runs them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from station.api.dashboard_history import SessionHistory
    from station.metrics import StationMetrics
    from station.payments.receipts import ReceiptSigner
    from station.services.authorisation import AuthorisationService
    from station.services.kill_switch import KillSwitch
    from station.services.negotiations import NegotiationService
    from station.services.session_events import SessionEvents
    from station.services.sessions import SessionReceipts, SessionService
    from station.services.unit_of_work import UnitOfWorkFactory
    from station.settings import Settings
    from station.store.db import Database


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    # The operator API's own queries (until they all go through the unit-of-work port).
    db: Database
    units: UnitOfWorkFactory
    metrics: StationMetrics
    negotiations: NegotiationService
    authorisation: AuthorisationService
    sessions: SessionService
    receipts: SessionReceipts
    signer: ReceiptSigner  # its public key verifies receipts (/v1/receipts/key)
    events: SessionEvents
    kill_switch: KillSwitch
    # The dashboard chart's memory of recent sessions' meter points.
    session_history: SessionHistory
    # Set while both listeners are up (/healthz); set once the station is asked to stop
    # (long-lived responses, event streams, end on it).
    ready: asyncio.Event
    stopping: asyncio.Event


def services_of(request: Request) -> Services:
    """FastAPI dependency: the services behind this app."""
    return request.app.state.services  # type: ignore[no-any-return]
