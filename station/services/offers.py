"""Offer ids, signatures and the wire shape of offers and negotiations (PROTOCOL §2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import rfc8785

from station.domain.money import Money
from station.services.repositories.negotiations import Negotiation, Offer

_Q4 = Decimal("0.0001")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(15)}"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class SignedTerms(Protocol):
    """What an offer's signature covers (an `Offer` record, or a row while callers move)."""

    @property
    def offer_id(self) -> str: ...
    @property
    def negotiation_id(self) -> str: ...
    @property
    def round(self) -> int: ...
    @property
    def tariff(self) -> dict[str, Any]: ...
    @property
    def estimated_cost(self) -> Decimal: ...
    @property
    def recommended_cap(self) -> Decimal: ...
    @property
    def valid_until(self) -> datetime: ...


def offer_signature(secret: str, row: SignedTerms) -> str:
    """HMAC-SHA256 over the offer's terms (JCS canonical JSON), base64url."""
    terms: dict[str, Any] = {
        "offer_id": row.offer_id,
        "negotiation_id": row.negotiation_id,
        "round": row.round,
        "tariff": row.tariff,
        "estimated_cost": str(Decimal(row.estimated_cost).quantize(_Q4)),
        "recommended_cap": str(Decimal(row.recommended_cap).quantize(_Q4)),
        "valid_until": rfc3339(row.valid_until),
    }
    mac = hmac.new(secret.encode(), rfc8785.dumps(terms), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def offer_view(row: Offer, currency: str) -> dict[str, Any]:
    return {
        "offer_id": row.offer_id,
        "valid_until": rfc3339(row.valid_until),
        "tariff": row.tariff,
        "estimated_cost": Money(row.estimated_cost, currency).to_wire(),
        "recommended_cap": Money(row.recommended_cap, currency).to_wire(),
        "signature": row.signature,
    }


def negotiation_view(neg: Negotiation, offer: Offer | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "negotiation_id": neg.negotiation_id,
        "status": neg.status,
        "round": neg.round,
        "max_rounds": neg.max_rounds,
        "expires_at": rfc3339(neg.expires_at),
        "offer": offer_view(offer, neg.currency) if offer is not None else None,
    }
    if neg.detail:
        doc["detail"] = neg.detail
    return doc
