"""Shared Payment Tokens: the agent asks for a token scoped to the challenge it pays.

As draft-stripe-authorize-00 has the client do it: after the 402, an SPT is
issued for the challenge's currency, with its amount as the ceiling, expiring
with the challenge, for the seller's `methodDetails.networkId` — so the token
is worth nothing beyond this one hold. `StripeTokenIssuer` calls Stripe's
issued-token API (`POST /v1/shared_payment/issued_tokens`) with the car owner's
key and payment method; the sandbox (`simulators.spt_sandbox`) speaks the
same API in front of localstripe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx

from vehicle.errors import AgentError

ISSUED_TOKENS = "/v1/shared_payment/issued_tokens"


class TokenRefused(AgentError):
    """No token could be issued (the issuer refused, or did not answer)."""


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What one token must be scoped to (from the challenge)."""

    amount_minor: int
    currency: str
    expires_at: datetime
    network_id: str | None


class TokenIssuer(Protocol):
    async def issue(self, request: TokenRequest) -> str:
        """An `spt_…` id scoped to `request`."""
        ...


class StripeTokenIssuer:
    """Issues SPTs on the owner's Stripe account from its payment method (`pm_…`)."""

    def __init__(
        self, api_key: str, payment_method: str, *, api_base: str = "https://api.stripe.com"
    ) -> None:
        self._api_key = api_key
        self.payment_method = payment_method
        self.api_base = api_base.rstrip("/")

    def __repr__(self) -> str:  # keep the key out of logs
        return f"StripeTokenIssuer({self.api_base}, {self.payment_method[:6]}…)"

    async def issue(self, request: TokenRequest) -> str:
        form = {
            "payment_method": self.payment_method,
            "usage_limits[currency]": request.currency,
            "usage_limits[max_amount]": str(request.amount_minor),
            "usage_limits[expires_at]": str(int(request.expires_at.timestamp())),
        }
        if request.network_id:
            form["seller_details[network_business_profile]"] = request.network_id
        try:
            async with httpx.AsyncClient(timeout=15) as http:
                response = await http.post(
                    self.api_base + ISSUED_TOKENS,
                    data=form,
                    headers={"Authorization": f"Bearer {self._api_key}"},
                )
        except httpx.HTTPError as exc:
            raise TokenRefused(f"token issuer unreachable: {exc}") from exc
        try:
            doc = response.json()
        except ValueError:
            doc = {}
        token = doc.get("id") if isinstance(doc, dict) else None
        if response.status_code != 200 or not isinstance(token, str):
            message = (doc.get("error") or {}).get("message") if isinstance(doc, dict) else None
            raise TokenRefused(
                f"no shared payment token: {message or f'HTTP {response.status_code}'}"
            )
        return token
