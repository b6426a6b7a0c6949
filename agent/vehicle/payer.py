"""MPP payer: check a 402 challenge against the deal, then build the credential.

The agent pays only the challenge it agreed to (PROTOCOL §3): method
`stripe`, intent `authorize`, `request.amount` = the cap in minor units,
`request.currency` = the cap's currency, `request.externalId` = the offer id,
and not expired. Anything else raises `ChallengeMismatch` with every reason;
nothing is paid. The credential echoes the challenge (pympp); its payload is
the wallet's instrument (`{"spt": "spt_…"}`, or chargepay's test-mode
`{"payment_method": "pm_…"}`) with the challenge's `externalId`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mpp import Challenge, Credential
from mpp._parsing import ParseError

from vehicle.errors import ChallengeMismatch, ProtocolViolation
from vehicle.money import Money
from vehicle.terms import parse_time
from vehicle.wallet import Instrument

METHOD = "stripe"
INTENT = "authorize"


@dataclass(frozen=True, slots=True)
class ExpectedPayment:
    """What the agent agreed to pay: a hold of `cap` for offer `offer_id`."""

    cap: Money
    offer_id: str


def parse_challenge(www_authenticate: str | None) -> Challenge:
    if not www_authenticate:
        raise ChallengeMismatch(("402 without a WWW-Authenticate: Payment challenge",))
    try:
        return Challenge.from_www_authenticate(www_authenticate)
    except (ParseError, ValueError) as exc:
        raise ChallengeMismatch((f"malformed challenge: {exc}",)) from exc


def mismatches(challenge: Challenge, expected: ExpectedPayment, now: datetime) -> tuple[str, ...]:
    """Every way `challenge` differs from `expected` (empty: it may be paid)."""
    reasons: list[str] = []
    request = challenge.request
    if challenge.method != METHOD:
        reasons.append(f"method {challenge.method!r}, expected {METHOD!r}")
    if challenge.intent != INTENT:
        reasons.append(f"intent {challenge.intent!r}, expected {INTENT!r}")
    want_amount = str(expected.cap.rounded().to_minor_units())
    if request.get("amount") != want_amount:
        reasons.append(f"amount {request.get('amount')!r}, expected {want_amount!r}")
    if request.get("currency") != expected.cap.currency:
        reasons.append(f"currency {request.get('currency')!r}, expected {expected.cap.currency!r}")
    if request.get("externalId") != expected.offer_id:
        reasons.append(f"externalId {request.get('externalId')!r}, expected {expected.offer_id!r}")
    if challenge.expires is None:
        reasons.append("challenge without an expiry")
    else:
        try:
            if parse_time(challenge.expires, "expires") <= now:
                reasons.append(f"challenge expired at {challenge.expires}")
        except ProtocolViolation as exc:  # an unreadable expiry is a mismatch
            reasons.append(str(exc))
    return tuple(reasons)


def authorization(
    challenge: Challenge, expected: ExpectedPayment, instrument: Instrument, now: datetime
) -> str:
    """The `Authorization: Payment …` value paying `challenge`, once it checks out."""
    reasons = mismatches(challenge, expected, now)
    if reasons:
        raise ChallengeMismatch(reasons)
    # The draft's payload: the token and the challenge's externalId, echoed.
    payload = {**instrument.payload(), "externalId": expected.offer_id}
    return Credential(challenge=challenge.to_echo(), payload=payload).to_authorization()
