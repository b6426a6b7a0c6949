from datetime import timedelta
from typing import Any

import pytest
from mpp import Challenge, Credential

from factories import NOW
from vehicle.errors import ChallengeMismatch
from vehicle.money import Money
from vehicle.payer import ExpectedPayment, authorization, parse_challenge
from vehicle.wallet import Instrument

EXPECTED = ExpectedPayment(cap=Money.parse("25.00", "usd"), offer_id="off_1")


def challenge(
    *, method: str = "stripe", intent: str = "authorize", expires_in: timedelta | None = None,
    **request: Any,
) -> Challenge:  # fmt: skip
    """A challenge as the station issues it, through pympp and back through the header."""
    doc = {"amount": "2500", "currency": "usd", "externalId": "off_1"} | request
    expires = NOW + (expires_in if expires_in is not None else timedelta(minutes=5))
    issued = Challenge.create(
        secret_key="station-secret",
        realm="127.0.0.1",
        method=method,
        intent=intent,
        request=doc,
        expires=expires.isoformat().replace("+00:00", "Z"),
    )
    return parse_challenge(issued.to_www_authenticate("127.0.0.1"))


def test_the_agreed_challenge_is_paid_with_the_payment_method_echoing_it() -> None:
    issued = challenge()

    header = authorization(issued, EXPECTED, Instrument("pm_card_visa"), NOW)

    credential = Credential.from_authorization(header)
    assert credential.payload == {"payment_method": "pm_card_visa", "externalId": "off_1"}
    assert credential.challenge.id == issued.id
    assert credential.challenge.request == issued.request_b64
    assert issued.verify("station-secret", "127.0.0.1")


def test_a_shared_payment_token_is_the_drafts_payload_spt_and_external_id() -> None:
    """draft-stripe-authorize-00, Credential Schema: {spt, externalId}."""
    issued = challenge(methodDetails={"networkId": "profile_x", "paymentMethodTypes": ["card"]})

    header = authorization(issued, EXPECTED, Instrument("spt_abc"), NOW)

    assert Credential.from_authorization(header).payload == {
        "spt": "spt_abc",
        "externalId": "off_1",
    }


@pytest.mark.parametrize(
    ("tampered", "reason"),
    [
        ({"amount": "2501"}, "amount"),
        ({"amount": 2500}, "amount"),
        ({"currency": "eur"}, "currency"),
        ({"externalId": "off_2"}, "externalId"),
        ({"method": "tempo"}, "method"),
        ({"intent": "subscription"}, "intent"),
        ({"expires_in": timedelta(seconds=-1)}, "expired"),
    ],
)
def test_a_challenge_that_is_not_the_deal_is_refused_unpaid(
    tampered: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ChallengeMismatch, match=reason) as refused:
        authorization(challenge(**tampered), EXPECTED, Instrument("pm_card_visa"), NOW)

    assert len(refused.value.reasons) == 1


def test_a_missing_or_garbled_challenge_is_refused() -> None:
    with pytest.raises(ChallengeMismatch, match="WWW-Authenticate"):
        parse_challenge(None)
    with pytest.raises(ChallengeMismatch, match="malformed"):
        parse_challenge('Bearer realm="x"')
