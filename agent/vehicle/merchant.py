"""Paying a standard MPP merchant: a ``stripe``/``charge`` 402 outside any negotiation.

Any merchant built with an MPP SDK (pympp, mppx) answers a request it wants paid for
with ``402`` and a ``WWW-Authenticate: Payment`` challenge. The agent pays one only on
the registered ``charge`` intent with method ``stripe``, only within its wallet limits
(and an optional ``max_amount`` for this one request), only while the challenge has
not expired, and only with a Shared Payment Token scoped to the challenge (the
wallet's issuer, or an ``spt_…`` instrument): a standard merchant takes no test-mode
PaymentMethod. The credential echoes the challenge's ``externalId`` when it has one.
The amount is counted in the wallet while the credential is in flight, and as spent
once the merchant answers with success (a charge is final); a refusal releases it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from mpp import Challenge, Credential, Receipt
from mpp._parsing import ParseError

from vehicle.errors import ChallengeMismatch, ProtocolViolation
from vehicle.money import Money, MoneyError
from vehicle.payer import CHARGE, METHOD, parse_challenges
from vehicle.spt import TokenRequest
from vehicle.terms import parse_time
from vehicle.wallet import Wallet


@dataclass(frozen=True, slots=True)
class MerchantPayment:
    """The merchant's answer; what was paid (None: it asked for nothing) and its receipt."""

    response: httpx.Response
    amount: Money | None = None
    receipt: Receipt | None = None


def _charge_challenge(header: str | None) -> Challenge:
    offered = parse_challenges(header)
    for challenge in offered:
        if (challenge.method, challenge.intent) == (METHOD, CHARGE):
            return challenge
    kinds = ", ".join(f"{c.method}/{c.intent}" for c in offered)
    raise ChallengeMismatch((f"no stripe/charge challenge offered (got {kinds})",))


def _amount(challenge: Challenge) -> Money:
    request = challenge.request
    try:
        return Money.from_minor_units(int(str(request.get("amount"))), str(request["currency"]))
    except (KeyError, ValueError, MoneyError) as exc:
        raise ChallengeMismatch((f"challenge amount unreadable: {exc}",)) from exc


async def pay_merchant(
    http: httpx.AsyncClient,
    wallet: Wallet,
    method: str,
    url: str,
    *,
    clock: Callable[[], datetime],
    timeout_s: float,
    max_amount: Money | None = None,
    **request: Any,
) -> MerchantPayment:
    """Send the request; pay its 402 on stripe/charge (checked first), send it again."""
    first = await http.request(method, url, **request)
    if first.status_code != 402:
        return MerchantPayment(first)
    challenge = _charge_challenge(first.headers.get("www-authenticate"))
    amount, now = _amount(challenge), clock()
    reasons = []
    if amount.amount <= 0:
        reasons.append(f"amount {amount.to_wire()} is not positive")
    if max_amount is not None and amount > max_amount:
        reasons.append(f"amount {amount.to_wire()} is above the {max_amount.to_wire()} allowed")
    try:
        expires = parse_time(challenge.expires or "", "expires")
    except ProtocolViolation as exc:
        raise ChallengeMismatch((*reasons, str(exc))) from exc
    if expires <= now:
        reasons.append(f"challenge expired at {challenge.expires}")
    if wallet.issuer is None and not wallet.instrument.is_token:
        reasons.append("a standard merchant takes Shared Payment Tokens; the wallet has none")
    if reasons:
        raise ChallengeMismatch(tuple(reasons))
    key = f"mpp:{challenge.id}"
    wallet.reserve(key, amount, expires + timedelta(seconds=timeout_s))  # within the limits
    try:
        token = wallet.instrument.value
        if wallet.issuer is not None:
            details = challenge.request.get("methodDetails")
            network = details.get("networkId") if isinstance(details, dict) else None
            token = await wallet.issuer.issue(
                TokenRequest(
                    amount.to_minor_units(),
                    amount.currency,
                    expires,
                    network if isinstance(network, str) else None,
                )
            )
        payload: dict[str, str] = {"spt": token}
        external = challenge.request.get("externalId")
        if isinstance(external, str):
            payload["externalId"] = external  # echoed, as the charge spec requires
        credential = Credential(challenge=challenge.to_echo(), payload=payload)
        headers = {**request.pop("headers", {}), "Authorization": credential.to_authorization()}
        paid = await http.request(method, url, headers=headers, **request)
    except BaseException:
        wallet.release(key)
        raise
    if not paid.is_success:
        wallet.release(key)  # the merchant refused the credential: nothing was taken
        return MerchantPayment(paid)
    wallet.placed(key)
    wallet.settle(key, amount)  # a charge is final
    receipt = None
    if header := paid.headers.get("payment-receipt"):
        try:
            receipt = Receipt.from_payment_receipt(header)
        except (ParseError, ValueError):
            receipt = None
    return MerchantPayment(paid, amount, receipt)
