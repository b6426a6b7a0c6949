"""Tables of the payments area: negotiations, offers, challenges, sessions,
settlements, and the stored tariffs and pricing policies.

Exactly-once lives here: a challenge row is consumed by one conditional
UPDATE (a replayed credential finds it used), a session's settlement is one
row keyed by the session id, written *before* Stripe is called.

Tariffs and the pricing policy are stored per charge point, with the
default under the key ``*``; `get_tariff` / `set_tariff` / `get_policy` /
`set_policy` are what the operator API uses.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from station.domain.negotiation import PriceBand, PricingPolicy
from station.domain.tariff import Tariff
from station.store.base import Amount, Base, Energy, UtcDateTime, utcnow

DEFAULT_KEY = "*"


class NegotiationRow(Base):
    __tablename__ = "negotiations"

    negotiation_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    charge_point_id: Mapped[str] = mapped_column(String(64))
    evse_id: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    energy_kwh: Mapped[Decimal] = mapped_column(Energy())
    max_power_kw: Mapped[Decimal | None] = mapped_column(Energy())
    departure_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16))  # open | agreed | rejected
    round: Mapped[int] = mapped_column(Integer)
    max_rounds: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    detail: Mapped[str | None] = mapped_column(Text)
    current_offer_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class OfferRow(Base):
    __tablename__ = "offers"

    offer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    negotiation_id: Mapped[str] = mapped_column(
        ForeignKey("negotiations.negotiation_id"), index=True
    )
    round: Mapped[int] = mapped_column(Integer)
    tariff: Mapped[dict[str, Any]] = mapped_column(JSON)
    estimated_cost: Mapped[Decimal] = mapped_column(Amount())
    recommended_cap: Mapped[Decimal] = mapped_column(Amount())
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    signature: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ChallengeRow(Base):
    """An MPP challenge the station issued; `used_at` is set once, by one credential."""

    __tablename__ = "payment_challenges"

    challenge_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    negotiation_id: Mapped[str] = mapped_column(String(40), index=True)
    offer_id: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


# A session that did not end failed or cancelled holds its negotiation: one per negotiation.
LIVE_SESSION = text("status NOT IN ('failed', 'cancelled')")
LIVE_NEGOTIATION_INDEX = "uq_sessions_live_negotiation_id"


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_status_updated_at", "status", "updated_at"),
        Index(
            LIVE_NEGOTIATION_INDEX,
            "negotiation_id",
            unique=True,
            sqlite_where=LIVE_SESSION,
            postgresql_where=LIVE_SESSION,
        ),
    )

    session_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    negotiation_id: Mapped[str] = mapped_column(String(40))
    offer_id: Mapped[str] = mapped_column(String(40))
    challenge_id: Mapped[str] = mapped_column(String(64), unique=True)
    charge_point_id: Mapped[str] = mapped_column(String(64))
    evse_id: Mapped[int] = mapped_column(Integer)
    id_token: Mapped[str] = mapped_column(String(20), unique=True)
    remote_start_id: Mapped[int] = mapped_column(Integer)
    tariff: Mapped[dict[str, Any]] = mapped_column(JSON)
    cap: Mapped[Decimal] = mapped_column(Amount())
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    energy_wh: Mapped[Decimal] = mapped_column(Energy(), default=Decimal(0))
    cost: Mapped[Decimal] = mapped_column(Amount(), default=Decimal(0))
    captured: Mapped[Decimal | None] = mapped_column(Amount())
    transaction_id: Mapped[int | None] = mapped_column(Integer)
    transaction_ref: Mapped[str | None] = mapped_column(String(64))
    meter_start_wh: Mapped[Decimal | None] = mapped_column(Energy())
    meter_stop_wh: Mapped[Decimal | None] = mapped_column(Energy())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    # When the station first asked the charge point to stop (agent, cap, suspension).
    stop_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_reading_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_active_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    payment_reference: Mapped[str | None] = mapped_column(String(64))
    payment_status: Mapped[str] = mapped_column(String(32))
    # "payment_method:pm_…" | "spt:spt_…": the hold request is built from the row alone
    # (settlement.hold_request), so every try of it carries the same parameters.
    payment_source: Mapped[str | None] = mapped_column(String(255))
    # The MPP intent paid on: "authorize" (a hold, captured at the end) or "charge" (the
    # cap charged at once, the unused part refunded at settlement; `refunded` is that part).
    payment_intent: Mapped[str] = mapped_column(
        String(16), default="authorize", server_default="authorize"
    )
    refunded: Mapped[Decimal | None] = mapped_column(Amount())
    # An unregistered payer's payment method (open_payers.py), its identity for the ceilings.
    payer_method: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class SettlementRow(Base):
    """The intent to capture, cancel or refund, written before Stripe is called; one per
    session. A refund's `amount` is what goes back (a charge session's unused part)."""

    __tablename__ = "settlements"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.session_id"), primary_key=True)
    action: Mapped[str] = mapped_column(String(16))  # capture | cancel | refund
    amount: Mapped[Decimal] = mapped_column(Amount())
    currency: Mapped[str] = mapped_column(String(3))
    payment_reference: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | done
    node_id: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    refund_reference: Mapped[str | None] = mapped_column(String(64))  # re_…, once done


class TariffRow(Base):
    __tablename__ = "tariffs"

    charge_point_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tariff: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class PricingPolicyRow(Base):
    __tablename__ = "pricing_policies"

    charge_point_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


async def consume_challenge(session: AsyncSession, challenge_id: str, now: datetime) -> bool:
    """Mark a challenge used; False if unknown or used before (a replay)."""
    result = await session.execute(
        update(ChallengeRow)
        .where(ChallengeRow.challenge_id == challenge_id, ChallengeRow.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def session_by_token(session: AsyncSession, id_token: str) -> SessionRow | None:
    return (
        await session.scalars(select(SessionRow).where(SessionRow.id_token == id_token))
    ).one_or_none()


async def locked_session(session: AsyncSession, session_id: str) -> SessionRow | None:
    return (
        await session.scalars(
            select(SessionRow).where(SessionRow.session_id == session_id).with_for_update()
        )
    ).one_or_none()


# -- tariffs and pricing policies (the operator API's store functions) ---------------


async def get_tariff(session: AsyncSession, charge_point_id: str | None = None) -> Tariff | None:
    """The charge point's tariff, else the default, else None."""
    for key in ([charge_point_id] if charge_point_id else []) + [DEFAULT_KEY]:
        row = await session.get(TariffRow, key)
        if row is not None:
            return Tariff.from_wire(row.tariff)
    return None


async def set_tariff(
    session: AsyncSession, tariff: Tariff, charge_point_id: str | None = None
) -> None:
    """Store the tariff of a charge point (or the default when `charge_point_id` is None)."""
    key = charge_point_id or DEFAULT_KEY
    doc = {**tariff.to_wire(), "tariff_id": tariff.tariff_id}
    row = await session.get(TariffRow, key)
    if row is None:
        session.add(TariffRow(charge_point_id=key, tariff=doc, updated_at=utcnow()))
    else:
        row.tariff, row.updated_at = doc, utcnow()
    await session.flush()


async def delete_tariff(session: AsyncSession, charge_point_id: str | None = None) -> bool:
    row = await session.get(TariffRow, charge_point_id or DEFAULT_KEY)
    if row is None:
        return False
    await session.delete(row)
    await session.flush()
    return True


async def list_tariffs(session: AsyncSession) -> dict[str, Tariff]:
    """Every stored tariff by charge point id (the default under ``*``)."""
    rows = (await session.scalars(select(TariffRow))).all()
    return {row.charge_point_id: Tariff.from_wire(row.tariff) for row in rows}


def policy_to_json(policy: PricingPolicy) -> dict[str, Any]:
    def text(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "currency": policy.currency,
        "list_price_per_kwh": str(policy.list_price_per_kwh),
        "floor_price_per_kwh": str(policy.floor_price_per_kwh),
        "session_fee": str(policy.session_fee),
        "time_price_per_hour": str(policy.time_price_per_hour),
        "idle_fee_per_minute": str(policy.idle_fee_per_minute),
        "idle_grace_minutes": policy.idle_grace_minutes,
        "max_power_kw": str(policy.max_power_kw),
        "min_cost": text(policy.min_cost),
        "max_cost": text(policy.max_cost),
        "time_of_day": [
            {"start_hour": b.start_hour, "multiplier": str(b.multiplier)}
            for b in policy.time_of_day
        ],
        "max_departure_discount": str(policy.max_departure_discount),
        "max_power_discount": str(policy.max_power_discount),
        "concession": str(policy.concession),
        "max_rounds": policy.max_rounds,
        "cap_margin": str(policy.cap_margin),
        "tariff_id": policy.tariff_id,
    }


def policy_from_json(doc: dict[str, Any]) -> PricingPolicy:
    """Parse a stored (or operator-sent) policy; raises ValueError/KeyError/TypeError."""

    def dec(name: str) -> Decimal:
        return Decimal(str(doc[name]))

    def opt(name: str) -> Decimal | None:
        value = doc.get(name)
        return None if value is None else Decimal(str(value))

    return PricingPolicy(
        currency=str(doc["currency"]),
        list_price_per_kwh=dec("list_price_per_kwh"),
        floor_price_per_kwh=dec("floor_price_per_kwh"),
        session_fee=Decimal(str(doc.get("session_fee", "0"))),
        time_price_per_hour=Decimal(str(doc.get("time_price_per_hour", "0"))),
        idle_fee_per_minute=Decimal(str(doc.get("idle_fee_per_minute", "0.10"))),
        idle_grace_minutes=int(doc.get("idle_grace_minutes", 10)),
        max_power_kw=Decimal(str(doc.get("max_power_kw", "150"))),
        min_cost=opt("min_cost"),
        max_cost=opt("max_cost"),
        time_of_day=tuple(
            PriceBand(int(b["start_hour"]), Decimal(str(b["multiplier"])))
            for b in doc.get("time_of_day", ())
        ),
        max_departure_discount=Decimal(str(doc.get("max_departure_discount", "0.08"))),
        max_power_discount=Decimal(str(doc.get("max_power_discount", "0.08"))),
        concession=Decimal(str(doc.get("concession", "0.35"))),
        max_rounds=int(doc.get("max_rounds", 5)),
        cap_margin=Decimal(str(doc.get("cap_margin", "0.10"))),
        tariff_id=str(doc.get("tariff_id", "default")),
    )


async def get_policy(
    session: AsyncSession, charge_point_id: str | None = None
) -> PricingPolicy | None:
    """The charge point's stored pricing policy, else the default one, else None."""
    for key in ([charge_point_id] if charge_point_id else []) + [DEFAULT_KEY]:
        row = await session.get(PricingPolicyRow, key)
        if row is not None:
            return policy_from_json(row.policy)
    return None


async def set_policy(
    session: AsyncSession, policy: PricingPolicy, charge_point_id: str | None = None
) -> None:
    key = charge_point_id or DEFAULT_KEY
    doc = policy_to_json(policy)
    row = await session.get(PricingPolicyRow, key)
    if row is None:
        session.add(PricingPolicyRow(charge_point_id=key, policy=doc, updated_at=utcnow()))
    else:
        row.policy, row.updated_at = doc, utcnow()
    await session.flush()
