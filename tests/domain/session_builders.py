"""Sessions and events for the domain's session tests (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from station.domain.money import Money
from station.domain.session import MppIntent, Payment, PaymentStatus, Session, SessionStatus
from station.domain.session_events import TransactionReport

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NODE = "node-a"
TARIFF = {"currency": "eur", "energy_price_per_kwh": "0.4000", "session_fee": "0.50"}


def a_session(
    *,
    cap: str = "10.00",
    intent: MppIntent = MppIntent.AUTHORIZE,
    status: SessionStatus = SessionStatus.AUTHORIZED,
    payment_status: PaymentStatus = PaymentStatus.REQUIRES_CAPTURE,
    reference: str | None = "pi_1",
    tariff: dict[str, str] | None = None,
) -> Session:
    return Session(
        session_id="ses_1",
        agent_id="agent_1",
        negotiation_id="neg_1",
        offer_id="off_1",
        challenge_id="ch_1",
        charge_point_id="CP1",
        evse_id=1,
        id_token="TOKEN",
        remote_start_id=7,
        tariff_doc=tariff or TARIFF,
        cap=Money(Decimal(cap), "eur"),
        status=status,
        payment=Payment(intent, payment_status, "payment_method:pm_card_visa", reference),
        created_at=T0,
        updated_at=T0,
    )


def a_report(
    energy_wh: str | Decimal,
    minutes: float,
    *,
    power_w: str | None = "11000",
    ref: str = "tx_1",
    cp: str = "CP1",
    ended: bool = False,
) -> TransactionReport:
    at = T0 + timedelta(minutes=minutes)
    return TransactionReport(
        charge_point_id=cp,
        transaction_id=1,
        transaction_ref=ref,
        evse_id=1,
        started_at=T0,
        energy_wh=Decimal(energy_wh),
        meter_start_wh=Decimal(1000),
        last_reading_at=at,
        power_w=None if power_w is None else Decimal(power_w),
        stopped_at=at if ended else None,
        stop_reason="EVDisconnected" if ended else None,
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)
