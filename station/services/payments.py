"""The payments side, wired: negotiation, authorisation, billing, settlement, sessions.

`Payments(station)` builds every service from the station's settings and
database; `run()` (owned by `Station.run`'s task group) runs the settlement
worker and the reconciler. `gateway` is the Stripe gateway unless one is
injected (tests: `FakeGateway`); `gateway.calls` counts Stripe calls.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from station.logs import get_logger
from station.payments.authorize import Authorizer
from station.payments.receipts import ReceiptSigner
from station.payments.stripe_gateway import StripeGateway
from station.services.authorisation import AuthorisationService
from station.services.billing import BillingListener
from station.services.gateway import PaymentGateway
from station.services.negotiations import NegotiationService
from station.services.ports import ChargePointCommands
from station.services.session_events import SessionEvents
from station.services.sessions import SessionService
from station.services.settlement import SettlementService

if TYPE_CHECKING:
    from station.settings import Settings
    from station.store.db import Database

_log = get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Payments:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        commands: Callable[[], ChargePointCommands | None],
        *,
        gateway: PaymentGateway | None = None,
        clock: Callable[[], datetime] = utc_now,
        events: SessionEvents | None = None,
    ) -> None:
        if settings.secret_key is not None:
            secret = settings.secret_key.get_secret_value()
        else:
            _log.warning("payments.ephemeral_secret", reason="CHARGEPAY_SECRET_KEY not set")
            secret = secrets.token_urlsafe(32)
        if gateway is None:
            api_key = settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else ""
            gateway = StripeGateway(
                api_key=api_key,
                api_base=settings.stripe_api_base,
                timeout_s=settings.stripe_timeout_s,
            )
        self.gateway = gateway
        realm = settings.public_url or "chargepay"
        self.authorizer = Authorizer(
            secret_key=secret,
            realm=realm,
            ttl_s=settings.challenge_ttl_s,
            network_id=settings.mpp_network_id,
            payment_method_types=tuple(settings.mpp_payment_method_types.split(",")),
            intents=tuple(settings.mpp_intents.split(",")),
        )
        self.signer = ReceiptSigner(secret)
        self.events = events or SessionEvents()  # several nodes: station.cluster.events
        self.settlement = SettlementService(db, settings, gateway, self.events, clock, commands)
        self.negotiations = NegotiationService(db, settings, secret, clock)
        self.authorisation = AuthorisationService(
            db,
            settings,
            secret,
            self.authorizer,
            gateway,
            self.settlement,
            commands,
            clock,
            self.events,
        )
        self.billing = BillingListener(db, self.events, self.settlement, commands, clock)
        self.sessions = SessionService(
            db, self.events, self.settlement, self.signer, commands, clock
        )
        self.settlement.receipt_for = self.sessions.receipt_event

    def stripe_calls(self) -> dict[str, Any]:
        """Stripe calls so far, by operation (for benchmarks)."""
        calls = getattr(self.gateway, "calls", {})
        return dict(calls)

    async def run(self) -> None:
        """The settlement worker and the reconciler, until `stop()` or cancelled."""
        await self.settlement.run()

    def stop(self) -> None:
        """Let in-flight settlements finish and start no more; `run()` returns. Idempotent."""
        self.settlement.stop()
