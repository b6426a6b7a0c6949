"""Response documents of the payments endpoints, for the OpenAPI contract (PROTOCOL §2–4).

The routes build these documents as dicts (the services own the shapes); the
models here describe them to readers of the generated OpenAPI document.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class TariffDoc(BaseModel):
    currency: str = Field(examples=["usd"])
    energy_price_per_kwh: str = Field(examples=["0.4500"])
    session_fee: str = Field(examples=["0.50"])
    time_price_per_hour: str = Field(examples=["0.00"])
    idle_fee_per_minute: str = Field(examples=["0.10"])
    idle_grace_minutes: int = Field(examples=[10])
    max_power_kw: str | None = Field(default=None, examples=["150"])
    min_cost: str | None = None
    max_cost: str | None = None


class OfferDoc(BaseModel):
    offer_id: str = Field(examples=["off_…"])
    valid_until: str
    tariff: TariffDoc
    estimated_cost: str = Field(examples=["18.50"])
    recommended_cap: str = Field(examples=["20.35"])
    signature: str = Field(description="HMAC-SHA256 of the offer's terms by the station")


class NegotiationDoc(BaseModel):
    negotiation_id: str = Field(examples=["neg_…"])
    status: str = Field(examples=["open"], description="open | agreed | rejected")
    round: int
    max_rounds: int
    expires_at: str
    offer: OfferDoc | None = Field(description="None once rejected")
    detail: str | None = Field(default=None, description="Why, when rejected")


class PaymentDoc(BaseModel):
    provider: str = Field(examples=["stripe"])
    reference: str | None = Field(examples=["pi_…"])
    status: str = Field(examples=["requires_capture"])
    intent: str = Field(
        default="authorize", examples=["authorize"], description="authorize | charge"
    )


class SessionDoc(BaseModel):
    session_id: str = Field(examples=["ses_…"])
    status: str = Field(
        examples=["authorized"],
        description="authorized | charging | stopping | settled | cancelled | failed",
    )
    charge_point_id: str
    evse_id: int
    id_token: str = Field(description="The OCPP id token of this session (≤ 20 characters)")
    tariff: TariffDoc
    cap: str
    currency: str
    energy_kwh: str
    cost: str
    captured: str | None
    started_at: str | None
    stopped_at: str | None
    stop_reason: str | None
    detail: str | None = None
    payment: PaymentDoc


class CostLineDoc(BaseModel):
    kind: str = Field(examples=["energy"], description="energy | session_fee | time | idle | …")
    quantity: str
    unit_price: str
    amount: str


class ReceiptDoc(BaseModel):
    session_id: str
    charge_point_id: str
    energy_kwh: str
    meter_start_wh: int | None
    meter_stop_wh: int | None
    started_at: str | None
    stopped_at: str | None
    tariff: TariffDoc
    cost_lines: list[CostLineDoc]
    total: str
    cap: str
    captured: str
    released: str
    currency: str
    payment_reference: str
    intent: str = Field(default="authorize", description="authorize | charge")
    charged: str | None = Field(default=None, description="charge: what was charged (the cap)")
    refunded: str | None = Field(default=None, description="charge: what was refunded")
    signature: str = Field(
        description="Ed25519 over the RFC 8785 canonical JSON of the body without it, "
        "base64url; key at GET /v1/receipt-key"
    )


class ReceiptKeyDoc(BaseModel):
    alg: str = Field(examples=["ed25519"])
    public_key: str = Field(description="Base64 of the raw 32-byte Ed25519 public key")
