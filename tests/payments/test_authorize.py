"""MPP `authorize` on method `stripe`: challenges bind every field; credentials are checked."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import mpp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.errors import InvalidCredential
from station.payments.authorize import Authorizer, authorize_request
from station.services.gateway import PaymentSource

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
AUTH = Authorizer(secret_key="s3cret-key-for-tests", realm="station.test", ttl_s=300)
REQUEST = authorize_request(amount_minor=2500, currency="usd", offer_id="off_abc")


def credential_for(challenge: mpp.Challenge, payload: dict[str, str] | None = None) -> str:
    payload = payload if payload is not None else {"payment_method": "pm_card_visa"}
    return mpp.Credential(challenge=challenge.to_echo(), payload=payload).to_authorization()


def test_the_challenge_header_carries_the_cap_in_minor_units() -> None:
    challenge = AUTH.challenge(REQUEST, NOW)

    parsed = mpp.Challenge.from_www_authenticate(AUTH.www_authenticate(challenge))

    assert (parsed.method, parsed.intent, parsed.realm) == ("stripe", "authorize", "station.test")
    assert parsed.request["amount"] == "2500" and parsed.request["externalId"] == "off_abc"
    assert parsed.expires == "2026-11-22T12:05:00Z"
    assert AUTH.challenge(REQUEST, NOW).id != challenge.id  # a nonce makes each one unique


def test_a_genuine_credential_verifies_to_its_payment_source() -> None:
    challenge = mpp.Challenge.from_www_authenticate(
        AUTH.www_authenticate(AUTH.challenge(REQUEST, NOW))
    )

    verified = AUTH.verify(credential_for(challenge), REQUEST, NOW)
    with_spt = AUTH.verify(credential_for(challenge, {"spt": "spt_123"}), REQUEST, NOW)

    assert verified.challenge_id == challenge.id
    assert verified.source == PaymentSource("payment_method", "pm_card_visa")
    assert with_spt.source == PaymentSource("spt", "spt_123")


def test_a_credential_for_another_cap_or_offer_is_refused() -> None:
    challenge = AUTH.challenge(REQUEST, NOW)
    other = authorize_request(amount_minor=3000, currency="usd", offer_id="off_abc")

    with pytest.raises(InvalidCredential, match="does not match"):
        AUTH.verify(credential_for(challenge), other, NOW)


def test_a_tampered_request_breaks_the_hmac() -> None:
    challenge = AUTH.challenge(REQUEST, NOW)
    forged = {**REQUEST, "amount": "1"}
    raw = json.dumps(forged, separators=(",", ":"), sort_keys=True).encode()
    echo = challenge.to_echo()
    tampered = mpp.ChallengeEcho(
        id=echo.id,
        realm=echo.realm,
        method=echo.method,
        intent=echo.intent,
        request=base64.urlsafe_b64encode(raw).decode().rstrip("="),
        expires=echo.expires,
        opaque=echo.opaque,
    )
    header = mpp.Credential(tampered, {"payment_method": "pm_x"}).to_authorization()

    with pytest.raises(InvalidCredential, match="not issued"):
        AUTH.verify(header, forged, NOW)


def test_a_challenge_of_another_station_is_refused() -> None:
    foreign = Authorizer(secret_key="another-secret", realm="station.test", ttl_s=300)

    with pytest.raises(InvalidCredential):
        AUTH.verify(credential_for(foreign.challenge(REQUEST, NOW)), REQUEST, NOW)


def test_an_expired_challenge_is_refused() -> None:
    challenge = AUTH.challenge(REQUEST, NOW)

    with pytest.raises(InvalidCredential, match="expired"):
        AUTH.verify(credential_for(challenge), REQUEST, NOW + timedelta(seconds=301))


@pytest.mark.parametrize(
    "payload",
    [{}, {"spt": "spt_1", "payment_method": "pm_1"}, {"payment_method": "card_1"}, {"spt": 3}],
)
def test_a_payload_must_be_one_spt_or_one_payment_method(payload: dict[str, object]) -> None:
    challenge = AUTH.challenge(REQUEST, NOW)

    with pytest.raises(InvalidCredential):
        AUTH.verify(credential_for(challenge, payload), REQUEST, NOW)  # type: ignore[arg-type]


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_garbage_authorization_is_an_invalid_credential_never_a_crash(text: str) -> None:
    with pytest.raises(InvalidCredential):
        AUTH.verify(f"Payment {text}", REQUEST, NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=500)
@given(
    st.fixed_dictionaries(
        {
            "challenge": st.dictionaries(
                st.sampled_from(
                    ["id", "realm", "method", "intent", "request", "expires", "opaque"]
                ),
                json_values,
            ),
            "payload": json_values,
        }
    )
)
def test_malformed_credential_documents_are_invalid_credentials(doc: dict[str, object]) -> None:
    encoded = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    with pytest.raises(InvalidCredential):
        AUTH.verify(f"Payment {encoded}", REQUEST, NOW)


def test_an_expired_challenge_is_the_payment_expired_problem() -> None:
    from station.errors import ChallengeExpired

    challenge = AUTH.challenge(REQUEST, NOW)

    with pytest.raises(ChallengeExpired) as refused:
        AUTH.verify(credential_for(challenge), REQUEST, NOW + timedelta(minutes=6))

    assert refused.value.code == "invalid_credential"
    assert refused.value.problem_type == "https://paymentauth.org/problems/payment-expired"


def test_the_request_names_the_network_and_payment_method_types_and_no_capture_method() -> None:
    """draft-stripe-authorize-00: methodDetails.networkId and paymentMethodTypes, REQUIRED."""
    auth = Authorizer(
        secret_key="k" * 32, realm="r", ttl_s=60, network_id="profile_123",
        payment_method_types=("card", "link"),
    )  # fmt: skip

    request = auth.request(amount_minor=100, currency="usd", offer_id="off_1")

    assert request["methodDetails"] == {
        "networkId": "profile_123",
        "paymentMethodTypes": ["card", "link"],
    }
    assert "captureMethod" not in request["methodDetails"]
