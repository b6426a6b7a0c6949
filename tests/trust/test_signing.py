"""The agent's side of identity: keys, files, and what a signed request carries."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from vehicle.signing import (
    AgentSigner,
    generate_keypair,
    load_private_key,
    load_public_key_b64,
    public_key_b64,
    save_private_key,
)


def test_the_public_key_is_base64_of_32_raw_bytes() -> None:
    key, public = generate_keypair()

    text = public_key_b64(key)

    assert len(base64.b64decode(text)) == 32
    assert text == public_key_b64(public)
    assert public_key_b64(load_public_key_b64(text)) == text


@pytest.mark.parametrize("text", ["not base64!", "AAAA", base64.b64encode(b"x" * 33).decode()])
def test_anything_else_is_not_a_public_key(text: str) -> None:
    with pytest.raises(ValueError):
        load_public_key_b64(text)


def test_a_saved_key_is_private_to_its_owner_and_loads_back(tmp_path: Path) -> None:
    key, _ = generate_keypair()
    path = tmp_path / "keys" / "agent.pem"

    save_private_key(key, path)

    assert path.stat().st_mode & 0o777 == 0o600
    assert public_key_b64(load_private_key(path)) == public_key_b64(key)


def test_a_request_with_a_body_signs_its_content_digest() -> None:
    key, _ = generate_keypair()
    signer = AgentSigner("agt_1", key, clock=lambda: datetime(2026, 11, 22, tzinfo=UTC))
    request = httpx.Request(
        "POST",
        "https://station.example/v1/negotiations",
        content=b'{"energy_kwh": "40"}',
        headers={"Authorization": "Payment abc"},
    )

    signer.sign(request)

    digest = base64.b64encode(hashlib.sha256(b'{"energy_kwh": "40"}').digest()).decode()
    signature_input = request.headers["signature-input"]
    assert request.headers["content-digest"] == f"sha-256=:{digest}:"
    assert signature_input.startswith('sig1=("@method" "@target-uri" "content-digest")')
    assert 'keyid="agt_1"' in signature_input and 'alg="ed25519"' in signature_input
    assert "created=1795305600" in signature_input and ";nonce=" in signature_input
    assert request.headers["authorization"] == "Payment abc"


def test_a_request_without_a_body_covers_no_digest_and_gets_a_fresh_nonce() -> None:
    key, _ = generate_keypair()
    signer = AgentSigner("agt_1", key)
    first = signer.sign(httpx.Request("GET", "https://station.example/v1/sessions/ses_1"))
    second = signer.sign(httpx.Request("GET", "https://station.example/v1/sessions/ses_1"))

    assert "content-digest" not in first.headers
    assert first.headers["signature-input"].startswith('sig1=("@method" "@target-uri");')
    assert first.headers["signature-input"] != second.headers["signature-input"]
