"""The station's wire values the agent reasons about: tariff, offer, negotiation reply.

Parsed strictly from PROTOCOL §2 JSON into frozen dataclasses with `Decimal`
money; anything malformed raises `ProtocolViolation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from vehicle.errors import ProtocolViolation
from vehicle.money import Money, MoneyError, check_currency, parse_decimal


def parse_time(text: Any, field: str) -> datetime:
    if not isinstance(text, str):
        raise ProtocolViolation(f"{field}: expected an RFC 3339 time, got {text!r}")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProtocolViolation(f"{field}: not an RFC 3339 time: {text!r}") from exc
    if value.utcoffset() is None:
        raise ProtocolViolation(f"{field}: time without an offset: {text!r}")
    return value


def format_time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def wire_decimal(doc: dict[str, Any], field: str, default: str | None = None) -> Decimal:
    raw = doc.get(field, default)
    if raw is None:
        raise ProtocolViolation(f"missing {field}")
    if not isinstance(raw, str):
        raise ProtocolViolation(f"{field}: expected a decimal string, got {raw!r}")
    try:
        return parse_decimal(raw)
    except MoneyError as exc:
        raise ProtocolViolation(f"{field}: {exc}") from exc


def _optional(doc: dict[str, Any], field: str) -> Decimal | None:
    return wire_decimal(doc, field) if doc.get(field) is not None else None


def _money(doc: dict[str, Any], field: str, currency: str) -> Money:
    return Money(wire_decimal(doc, field), currency)


@dataclass(frozen=True, slots=True)
class Tariff:
    currency: str
    energy_price_per_kwh: Decimal
    session_fee: Decimal = Decimal(0)
    time_price_per_hour: Decimal = Decimal(0)
    idle_fee_per_minute: Decimal = Decimal(0)
    idle_grace_minutes: int = 0
    max_power_kw: Decimal | None = None
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None

    @classmethod
    def from_wire(cls, doc: Any) -> Tariff:
        if not isinstance(doc, dict):
            raise ProtocolViolation(f"tariff: expected an object, got {doc!r}")
        try:
            currency = check_currency(str(doc.get("currency")))
        except MoneyError as exc:
            raise ProtocolViolation(f"tariff.currency: {exc}") from exc
        grace = doc.get("idle_grace_minutes", 0)
        if not isinstance(grace, int) or isinstance(grace, bool) or grace < 0:
            raise ProtocolViolation(f"tariff.idle_grace_minutes: {grace!r}")
        tariff = cls(
            currency=currency,
            energy_price_per_kwh=wire_decimal(doc, "energy_price_per_kwh"),
            session_fee=wire_decimal(doc, "session_fee", "0"),
            time_price_per_hour=wire_decimal(doc, "time_price_per_hour", "0"),
            idle_fee_per_minute=wire_decimal(doc, "idle_fee_per_minute", "0"),
            idle_grace_minutes=grace,
            max_power_kw=_optional(doc, "max_power_kw"),
            min_cost=_optional(doc, "min_cost"),
            max_cost=_optional(doc, "max_cost"),
        )
        prices = (
            tariff.energy_price_per_kwh,
            tariff.session_fee,
            tariff.time_price_per_hour,
            tariff.idle_fee_per_minute,
        )
        if any(price < 0 for price in prices):
            raise ProtocolViolation("tariff: negative price")
        return tariff


@dataclass(frozen=True, slots=True)
class Offer:
    offer_id: str
    valid_until: datetime
    tariff: Tariff
    estimated_cost: Money
    recommended_cap: Money | None = None

    @classmethod
    def from_wire(cls, doc: Any) -> Offer:
        if not isinstance(doc, dict) or not isinstance(doc.get("offer_id"), str):
            raise ProtocolViolation(f"offer: expected an object with an offer_id, got {doc!r}")
        tariff = Tariff.from_wire(doc.get("tariff"))
        cap = doc.get("recommended_cap")
        return cls(
            offer_id=doc["offer_id"],
            valid_until=parse_time(doc.get("valid_until"), "offer.valid_until"),
            tariff=tariff,
            estimated_cost=_money(doc, "estimated_cost", tariff.currency),
            recommended_cap=_money(doc, "recommended_cap", tariff.currency) if cap else None,
        )


class NegotiationStatus(StrEnum):
    OPEN = "open"
    AGREED = "agreed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class NegotiationReply:
    """The station's answer to an opening or a counter (PROTOCOL §2)."""

    negotiation_id: str
    status: NegotiationStatus
    round: int
    max_rounds: int
    offer: Offer | None = None
    expires_at: datetime | None = None
    detail: str | None = None

    @property
    def can_counter(self) -> bool:
        """A counter is heard up to and including the last round (past it: 409)."""
        return self.status is NegotiationStatus.OPEN and self.round <= self.max_rounds

    @property
    def last_round(self) -> bool:
        """A counter now is final: the station agrees to it or rejects it."""
        return self.round >= self.max_rounds

    @classmethod
    def from_wire(cls, doc: Any) -> NegotiationReply:
        if not isinstance(doc, dict) or not isinstance(doc.get("negotiation_id"), str):
            raise ProtocolViolation(f"negotiation: expected an object, got {doc!r}")
        try:
            status = NegotiationStatus(str(doc.get("status")))
        except ValueError as exc:
            raise ProtocolViolation(f"negotiation.status: {doc.get('status')!r}") from exc
        rounds = (doc.get("round", 1), doc.get("max_rounds", 1))
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in rounds):
            raise ProtocolViolation(f"negotiation rounds: {rounds!r}")
        offer = Offer.from_wire(doc["offer"]) if doc.get("offer") is not None else None
        if status is not NegotiationStatus.REJECTED and offer is None:
            raise ProtocolViolation(f"negotiation {status}: no offer")
        expires = doc.get("expires_at")
        return cls(
            negotiation_id=doc["negotiation_id"],
            status=status,
            round=rounds[0],
            max_rounds=rounds[1],
            offer=offer,
            expires_at=parse_time(expires, "expires_at") if expires else None,
            detail=doc.get("detail") if isinstance(doc.get("detail"), str) else None,
        )
