"""MPP's ``authorize`` and ``charge`` intents on method ``stripe``: the 402 challenges
and their credentials.

``charge`` is the registered intent (mpp-specs, draft-stripe-charge-00): the
same request shape, the cap charged at once (the station refunds the unused
part at settlement). Which intents a 402 offers is ``settings.mpp_intents``;
each offered intent is one challenge, so a payer picks by what it can pay.

As the drafts specify it (draft-payment-intent-authorize-00 and
draft-stripe-authorize-00, mpp-specs): pympp ships only a ``charge`` intent,
so this builds ``authorize`` on its primitives. A challenge's request is
``{"amount": "<cap, minor units>", "currency", "externalId": "<offer_id>",
"methodDetails": {"networkId": "<the station's Stripe profile>",
"paymentMethodTypes": ["card", …]}}`` (no ``captureMethod``: the intent is
manual capture); its id is HMAC-SHA256 (`mpp.generate_challenge_id`) over
realm, method, intent, request, expiry and an opaque nonce, so a payer can
change none of them. `verify` checks a credential's echo against the secret,
the route's own request and the clock; the caller then consumes the challenge
id in the database (one use).

The credential payload is the draft's ``{"spt": "spt_…", "externalId"?}``.
chargepay also takes ``{"payment_method": "pm_…"}`` (a Stripe test-mode
PaymentMethod; an extension, documented in docs/protocol.md) so the sandbox
and the demo can pay without an SPT issuer.

Refusals carry the problem ``type`` the core spec defines
(``https://paymentauth.org/problems/…``) and chargepay's stable ``code``
(``invalid_credential``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

import mpp
from mpp._parsing import ParseError

from station.errors import (
    ChallengeExpired,
    InvalidCredential,
    MalformedCredential,
    VerificationFailed,
)
from station.services.gateway import PaymentSource

METHOD = "stripe"
INTENT = "authorize"
CHARGE = "charge"
INTENTS = (INTENT, CHARGE)
_DESCRIPTIONS = {
    INTENT: "Hold for an EV charging session",
    CHARGE: "Charge for an EV charging session (the unused part is refunded)",
}
# A Stripe id: its prefix, then letters, digits and underscores (``pm_card_visa``,
# ``spt_1Q…``). Bounded so that it always fits the session's payment_source column
# (String(255), with "payment_method:" in front) on every database.
MAX_SOURCE_CHARS = 200
_STRIPE_ID = re.compile(r"[A-Za-z0-9_]+")


DEFAULT_NETWORK_ID = "profile_chargepay_sandbox"


def authorize_request(
    *,
    amount_minor: int,
    currency: str,
    offer_id: str,
    network_id: str = DEFAULT_NETWORK_ID,
    payment_method_types: tuple[str, ...] = ("card",),
) -> dict[str, Any]:
    """The challenge's ``request`` (draft-stripe-authorize-00, Request Schema)."""
    return {
        "amount": str(amount_minor),
        "currency": currency,
        "externalId": offer_id,
        "methodDetails": {
            "networkId": network_id,
            "paymentMethodTypes": list(payment_method_types),
        },
    }


@dataclass(frozen=True, slots=True)
class VerifiedCredential:
    challenge_id: str
    source: PaymentSource
    payer: str | None
    intent: str = INTENT


def _decode(b64: str) -> dict[str, Any]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise MalformedCredential("challenge echo is not base64url JSON") from exc
    if not isinstance(doc, dict):
        raise MalformedCredential("challenge echo is not a JSON object")
    return doc


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Authorizer:
    def __init__(
        self,
        *,
        secret_key: str,
        realm: str,
        ttl_s: int,
        network_id: str = DEFAULT_NETWORK_ID,
        payment_method_types: tuple[str, ...] = ("card",),
        intents: tuple[str, ...] = INTENTS,
    ) -> None:
        unknown = set(intents) - set(INTENTS)
        if not intents or unknown:
            raise ValueError(f"intents must be among {INTENTS}, got {intents}")
        self.intents = intents
        self._secret = secret_key
        self.realm = realm
        self._ttl = timedelta(seconds=ttl_s)
        self.network_id = network_id
        self.payment_method_types = payment_method_types

    def request(self, *, amount_minor: int, currency: str, offer_id: str) -> dict[str, Any]:
        """The challenge request for a hold of `amount_minor` for offer `offer_id`."""
        return authorize_request(
            amount_minor=amount_minor,
            currency=currency,
            offer_id=offer_id,
            network_id=self.network_id,
            payment_method_types=self.payment_method_types,
        )

    def challenge(
        self, request: dict[str, Any], now: datetime, intent: str = INTENT
    ) -> mpp.Challenge:
        """A fresh challenge (unique id: an opaque nonce is bound into the HMAC)."""
        return mpp.Challenge.create(
            secret_key=self._secret,
            realm=self.realm,
            method=METHOD,
            intent=intent,
            request=request,
            expires=_iso(now + self._ttl),
            description=_DESCRIPTIONS[intent],
            meta={"nonce": secrets.token_urlsafe(12)},
        )

    def www_authenticate(self, challenge: mpp.Challenge) -> str:
        return challenge.to_www_authenticate(self.realm)

    def verify(
        self, authorization: str, expected_request: dict[str, Any], now: datetime
    ) -> VerifiedCredential:
        """Check a credential; raises InvalidCredential (tampered, foreign, expired, malformed)."""
        scheme = next(
            (
                part.strip()
                for part in authorization.split(",")
                if part.strip().lower().startswith("payment ")
            ),
            None,
        )
        if scheme is None:
            raise MalformedCredential("no Payment credential in Authorization")
        try:
            credential = mpp.Credential.from_authorization(scheme)
        except (ParseError, ValueError, TypeError) as exc:
            raise MalformedCredential("malformed credential") from exc
        echo = credential.challenge
        request = _decode(echo.request)
        opaque = _decode(echo.opaque) if echo.opaque else None
        try:
            expected_id = mpp.generate_challenge_id(
                secret_key=self._secret,
                realm=echo.realm,
                method=echo.method,
                intent=echo.intent,
                request=request,
                expires=echo.expires,
                digest=echo.digest,
                opaque=opaque,
                header=echo.header,
            )
        except Exception as exc:  # non-canonical JSON and the like
            raise MalformedCredential("challenge echo cannot be canonicalised") from exc
        if not hmac.compare_digest(expected_id.encode(), echo.id.encode()):
            raise InvalidCredential("challenge was not issued by this station")
        if (echo.realm, echo.method) != (self.realm, METHOD) or echo.intent not in self.intents:
            raise InvalidCredential("credential is for another realm, method or intent")
        if request != expected_request:
            raise VerificationFailed("credential does not match this offer and cap")
        try:
            expires = datetime.fromisoformat((echo.expires or "").replace("Z", "+00:00"))
        except ValueError as exc:
            raise MalformedCredential("challenge has no valid expiry") from exc
        if expires.tzinfo is None or expires <= now:
            raise ChallengeExpired("challenge expired")
        return VerifiedCredential(
            echo.id, _source(credential.payload, request), credential.source, echo.intent
        )


def _source(payload: Any, request: dict[str, Any]) -> PaymentSource:
    if not isinstance(payload, dict):
        raise MalformedCredential("credential payload is not an object")
    external = payload.get("externalId")
    if external is not None and external != request.get("externalId"):
        raise VerificationFailed("credential externalId does not match the offer")
    spt, method = payload.get("spt"), payload.get("payment_method")
    if _is_stripe_id(spt, "spt_") and method is None:
        return PaymentSource("spt", spt)
    if _is_stripe_id(method, "pm_") and spt is None:
        return PaymentSource("payment_method", method)
    raise MalformedCredential(
        'payload must be {"spt": "spt_…"} or {"payment_method": "pm_…"}'
        f" (letters, digits and underscores, at most {MAX_SOURCE_CHARS} characters)"
    )


def _is_stripe_id(value: object, prefix: str) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and len(value) <= MAX_SOURCE_CHARS
        and value.startswith(prefix)
        and _STRIPE_ID.fullmatch(value) is not None
    )
