"""Shared Payment Tokens in the sandbox: a thin layer in front of localstripe.

localstripe cannot issue SPTs. This layer (the idempotency-enforcing
`StripeProxy`, plus two Stripe endpoints) does, as Stripe's issued-token API
does, and resolves them when a PaymentIntent is created with one::

    async with SptSandbox(localstripe_url).running() as sandbox:
        settings = Settings(stripe_api_base=sandbox.url, ...)
        # the car's side: issue a token scoped to the challenge
        POST {sandbox.url}/v1/shared_payment/issued_tokens
            payment_method=pm_card_visa
            usage_limits[currency]=usd  usage_limits[max_amount]=2500
            usage_limits[expires_at]=<unix time>
            seller_details[network_business_profile]=profile_…

A token (`spt_…`) is bound to a payment method, a currency, an amount ceiling
and an expiry, and is single use. `POST /v1/payment_intents` with
`shared_payment_granted_token=spt_…` is checked against those bounds and then
forwarded to localstripe with the token's payment method in its place; a
token that is unknown, used, expired, in another currency or below the amount
is refused the way Stripe refuses it (`400 invalid_request_error`). The same
request replayed under its `Idempotency-Key` is the proxy's stored answer, so
a retried hold never counts as a second use.

`GET /v1/shared_payment/issued_tokens/{id}` shows a token (with its `status`:
`active`, `used` or `expired`). The seller's view, `GET
/v1/shared_payment/granted_tokens/{id}`, shows its `payment_method_details`
(`type`, and a card `fingerprint`: here the payment method's id), which is how a
station tells apart payers it knows only by their payment method.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from simulators.stripe_proxy import StripeProxy

ISSUED_TOKENS = "/v1/shared_payment/issued_tokens"
GRANTED_TOKENS = "/v1/shared_payment/granted_tokens"


@dataclass
class IssuedToken:
    token_id: str
    payment_method: str
    currency: str
    max_amount: int
    expires_at: int
    network_business_profile: str | None
    used_by: str | None = None  # the idempotency key (or request) that consumed it

    def status(self, now: float) -> str:
        if self.used_by is not None:
            return "used"
        return "expired" if now >= self.expires_at else "active"

    def to_wire(self, now: float) -> dict[str, object]:
        return {
            "id": self.token_id,
            "object": "shared_payment.issued_token",
            "payment_method": self.payment_method,
            "usage_limits": {
                "currency": self.currency,
                "max_amount": self.max_amount,
                "expires_at": self.expires_at,
            },
            "seller_details": {"network_business_profile": self.network_business_profile},
            "status": self.status(now),
        }


class TokenRefused(ValueError):
    """A token Stripe would refuse; the message is Stripe's kind of message."""

    def __init__(self, message: str, param: str = "shared_payment_granted_token") -> None:
        super().__init__(message)
        self.param = param


class SptSandbox(StripeProxy):
    def __init__(self, target_url: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(target_url)
        self.tokens: dict[str, IssuedToken] = {}
        self._now = clock

    def issue(
        self,
        payment_method: str,
        *,
        currency: str,
        max_amount: int,
        expires_at: int,
        network_business_profile: str | None = None,
    ) -> IssuedToken:
        """Issue a token (what `POST /v1/shared_payment/issued_tokens` does)."""
        if not payment_method.startswith("pm_"):
            raise TokenRefused("payment_method must be a pm_… id", "payment_method")
        if len(currency) != 3 or not currency.isalpha():
            raise TokenRefused("usage_limits[currency] must be a currency code", "usage_limits")
        if max_amount <= 0:
            raise TokenRefused("usage_limits[max_amount] must be positive", "usage_limits")
        if expires_at <= self._now():
            raise TokenRefused("usage_limits[expires_at] must be in the future", "usage_limits")
        token = IssuedToken(
            f"spt_{secrets.token_hex(12)}",
            payment_method,
            currency.lower(),
            max_amount,
            expires_at,
            network_business_profile,
        )
        self.tokens[token.token_id] = token
        return token

    async def _answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes, operation: str
    ) -> tuple[int, bytes]:
        path = target.split("?", 1)[0]
        try:
            if path == ISSUED_TOKENS and method == "POST":
                return 200, self._issue_form(body)
            if path.startswith(ISSUED_TOKENS + "/") and method == "GET":
                token = self.tokens.get(path.rsplit("/", 1)[1])
                if token is None:
                    return 404, _error("No such shared payment token", "id")
                return 200, json.dumps(token.to_wire(self._now())).encode()
            if path.startswith(GRANTED_TOKENS + "/") and method == "GET":
                token = self.tokens.get(path.rsplit("/", 1)[1])
                if token is None:
                    return 404, _error("No such shared payment token", "id")
                granted = {
                    "id": token.token_id,
                    "object": "shared_payment.granted_token",
                    "payment_method_details": {
                        "type": "card",
                        "card": {"fingerprint": token.payment_method},
                    },
                    "usage_limits": token.to_wire(self._now())["usage_limits"],
                }
                return 200, json.dumps(granted).encode()
            if path == "/v1/payment_intents" and method == "POST":
                body = self._resolve(body, headers.get("idempotency-key"))
                # localstripe knows no machine-payments API version.
                headers = {k: v for k, v in headers.items() if k != "stripe-version"}
        except TokenRefused as refused:
            return 400, _error(str(refused), refused.param)
        return await super()._answer(method, target, headers, body, operation)

    def _issue_form(self, body: bytes) -> bytes:
        form = dict(parse_qsl(body.decode()))
        try:
            token = self.issue(
                form.get("payment_method", ""),
                currency=form.get("usage_limits[currency]", ""),
                max_amount=int(form.get("usage_limits[max_amount]", "0")),
                expires_at=int(form.get("usage_limits[expires_at]", "0")),
                network_business_profile=form.get("seller_details[network_business_profile]"),
            )
        except ValueError as exc:
            if isinstance(exc, TokenRefused):
                raise
            raise TokenRefused(f"invalid usage_limits: {exc}", "usage_limits") from exc
        return json.dumps(token.to_wire(self._now())).encode()

    def _resolve(self, body: bytes, idempotency_key: str | None) -> bytes:
        """A PaymentIntent create with a token, as the same create with its payment method."""
        form = parse_qsl(body.decode(), keep_blank_values=True)
        token_id = dict(form).get("shared_payment_granted_token")
        if token_id is None:
            return body
        token = self.tokens.get(token_id)
        if token is None:
            raise TokenRefused(f"No such shared payment granted token: '{token_id}'")
        replay = idempotency_key is not None and token.used_by == idempotency_key
        if not replay:
            params = dict(form)
            status = token.status(self._now())
            if status != "active":
                raise TokenRefused(f"The shared payment granted token {token_id} is {status}")
            if params.get("currency", "").lower() != token.currency:
                raise TokenRefused(
                    f"The token is limited to {token.currency}, not {params.get('currency')}"
                )
            if int(params.get("amount", "0")) > token.max_amount:
                raise TokenRefused(
                    f"The amount {params.get('amount')} exceeds the token's max_amount "
                    f"{token.max_amount}"
                )
            token.used_by = idempotency_key or secrets.token_hex(8)
        rewritten = [
            ("payment_method", token.payment_method)
            if k == "shared_payment_granted_token"
            else (k, v)
            for k, v in form
        ]
        return urlencode(rewritten).encode()


def _error(message: str, param: str) -> bytes:
    return json.dumps(
        {"error": {"type": "invalid_request_error", "message": message, "param": param}}
    ).encode()
