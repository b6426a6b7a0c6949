"""MPP payer: check a 402 challenge against the deal, then build the credential.

A 402 may offer several challenges (one WWW-Authenticate field each, or
comma-separated in one): `parse_challenge` picks the first in the agent's
order of preference (`authorize`, then the registered `charge`, unless told
otherwise) among those with method `stripe`.

The agent pays only the challenge it agreed to (PROTOCOL §3): method
`stripe`, an intent it takes (`authorize` or `charge`), `request.amount` = the cap in minor units,
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
CHARGE = "charge"
INTENTS = (INTENT, CHARGE)


@dataclass(frozen=True, slots=True)
class ExpectedPayment:
    """What the agent agreed to pay: `cap` for offer `offer_id` (`external_id`: the
    challenge's externalId to expect, the offer id unless said otherwise), on one of
    `intents` — a hold (`authorize`) or a charge refunded down to the cost (`charge`)."""

    cap: Money
    offer_id: str
    intents: tuple[str, ...] = INTENTS


def split_challenges(header: str) -> list[str]:
    """The ``Payment`` challenges of a WWW-Authenticate value (RFC 9110: one field may
    hold several, comma-separated; commas inside quoted strings do not split)."""
    fields: list[str] = []
    start, quoted, escaped = 0, False, False
    for index, character in enumerate(header):
        if escaped:
            escaped = False
        elif quoted and character == "\\":
            escaped = True
        elif character == '"':
            quoted = not quoted
        elif character == "," and not quoted:
            fields.append(header[start:index])
            start = index + 1
    fields.append(header[start:])
    challenges: list[list[str]] = []
    current: list[str] | None = None
    for field in (f.strip() for f in fields):
        scheme, _, rest = field.partition(" ")
        if "=" not in scheme and not rest.lstrip().startswith("="):  # a new challenge
            current = [field] if scheme.lower() == "payment" else None
            if current is not None:
                challenges.append(current)
        elif current is not None:
            current.append(field)
    return [", ".join(parts) for parts in challenges]


def parse_challenges(www_authenticate: str | None) -> list[Challenge]:
    """Every Payment challenge a 402 offers; ChallengeMismatch when none can be read."""
    if not www_authenticate:
        raise ChallengeMismatch(("402 without a WWW-Authenticate: Payment challenge",))
    parsed: list[Challenge] = []
    errors: list[str] = []
    for field in split_challenges(www_authenticate):
        try:
            parsed.append(Challenge.from_www_authenticate(field))
        except (ParseError, ValueError) as exc:
            errors.append(f"malformed challenge: {exc}")
    if not parsed:
        raise ChallengeMismatch(tuple(errors) or ("malformed challenge: no Payment challenge",))
    return parsed


def parse_challenge(www_authenticate: str | None, prefer: tuple[str, ...] = INTENTS) -> Challenge:
    """The challenge to pay: the first stripe one in the order of `prefer`, else the first
    offered (which `mismatches` then explains)."""
    offered = parse_challenges(www_authenticate)
    for intent in prefer:
        for challenge in offered:
            if challenge.method == METHOD and challenge.intent == intent:
                return challenge
    return offered[0]


def mismatches(challenge: Challenge, expected: ExpectedPayment, now: datetime) -> tuple[str, ...]:
    """Every way `challenge` differs from `expected` (empty: it may be paid)."""
    reasons: list[str] = []
    request = challenge.request
    if challenge.method != METHOD:
        reasons.append(f"method {challenge.method!r}, expected {METHOD!r}")
    if challenge.intent not in expected.intents:
        wanted = " or ".join(repr(i) for i in expected.intents)
        reasons.append(f"intent {challenge.intent!r}, expected {wanted}")
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
