"""The agent's identity on the wire: HTTP Message Signatures (RFC 9421), PROTOCOL §1.

Every request an agent sends is signed with its Ed25519 key: ``keyid`` = the
agent id the operator gave it, covered components ``"@method"
"@target-uri"`` plus ``"content-digest"`` when there is a body (RFC 9530
``Content-Digest: sha-256=:…:``), parameters ``created``, ``keyid``, ``alg``
and a fresh ``nonce``. The ``Authorization`` header is left alone for the MPP
payment credential. ::

    key = load_private_key(Path("agent.pem"))
    async with httpx.AsyncClient(auth=AgentSigner("agt_…", key)) as client:
        await client.post(f"{station}/v1/negotiations", json={"energy_kwh": "40"})

Keys: `generate_keypair()`, `public_key_b64()` (what the operator registers:
base64 of the raw 32-byte public key), `save_private_key()` /
`load_private_key()` (PKCS#8 PEM, mode 0600).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import HTTPSignatureKeyResolver

SIGNATURE_LABEL = "sig1"
COVERED_COMPONENTS = ("@method", "@target-uri")
PUBLIC_KEY_BYTES = 32


def generate_keypair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    private_key = Ed25519PrivateKey.generate()
    return private_key, private_key.public_key()


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Base64 (standard alphabet, padded) of the raw 32-byte Ed25519 public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key_b64(text: str) -> Ed25519PublicKey:
    """The inverse of `public_key_b64`; ValueError unless it is 32 raw bytes in base64."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError) as exc:
        raise ValueError("public key is not valid base64") from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"public key must be {PUBLIC_KEY_BYTES} raw bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write the key as unencrypted PKCS#8 PEM, readable by the owner only (0600)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to an existing file


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        return self._key

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        return self._key.public_key()


@dataclass
class _Message:
    """The view of a request the signature library reads (and writes headers to)."""

    method: str
    url: str
    headers: httpx.Headers


def _new_nonce() -> str:
    return secrets.token_urlsafe(18)


class AgentSigner(httpx.Auth):
    """An `httpx.Auth` that signs every request as the agent `agent_id`.

    ``clock`` and ``nonce`` are injectable so tests can forge stale or
    replayed requests; in use, leave them be.
    """

    requires_request_body = True

    def __init__(
        self,
        agent_id: str,
        private_key: Ed25519PrivateKey,
        *,
        clock: Callable[[], datetime] | None = None,
        nonce: Callable[[], str] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self._signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(private_key)
        )
        self._clock = clock or (lambda: datetime.now(UTC))
        self._nonce = nonce or _new_nonce

    def sign(self, request: httpx.Request) -> httpx.Request:
        """Sign `request` in place (its body must be read) and return it."""
        body = request.content
        # A resent request (redirect, retry) is signed afresh: drop the old fields.
        for name in ("content-digest", "signature", "signature-input"):
            request.headers.pop(name, None)
        self._signer.sign(
            _Message(request.method, str(request.url), request.headers),
            key_id=self.agent_id,
            created=self._clock(),
            nonce=self._nonce(),
            label=SIGNATURE_LABEL,
            covered_component_ids=COVERED_COMPONENTS,
            body=body or None,
        )
        return request

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield self.sign(request)


class SigningTransport(httpx.AsyncBaseTransport):
    """A transport that signs every request it sends, each with a fresh nonce.

    For HTTP clients that resend a request below the `httpx.Auth` layer — pympp's
    `PaymentTransport` retries a 402 with the first request's headers, which would
    replay its signature and nonce (the station answers `401`). Put this under it::

        PaymentTransport(methods=[...], inner=SigningTransport(AgentSigner(...)))
    """

    def __init__(self, signer: AgentSigner, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.signer = signer
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return await self._inner.handle_async_request(self.signer.sign(request))

    async def aclose(self) -> None:
        await self._inner.aclose()
