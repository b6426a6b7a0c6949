"""Receipts: the MPP ``Payment-Receipt`` header and the station's signature on the body.

The body is signed with Ed25519 over its RFC 8785 (JCS) canonical JSON
without the ``signature`` member; the key is derived from
``settings.secret_key`` and its public half is published at
``GET /v1/receipt-key`` so an agent can check a receipt offline.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

import mpp
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class ReceiptSigner:
    def __init__(self, secret_key: str) -> None:
        seed = hashlib.sha256(b"chargepay receipt key\x00" + secret_key.encode()).digest()
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key_b64 = base64.b64encode(raw).decode()

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        unsigned = {k: v for k, v in body.items() if k != "signature"}
        signature = self._key.sign(rfc8785.dumps(unsigned))
        return {**unsigned, "signature": _b64url(signature)}


def verify_receipt_body(body: dict[str, Any], public_key_b64: str) -> bool:
    """Check a receipt body's signature with the station's published key."""
    signature = body.get("signature")
    if not isinstance(signature, str):
        return False
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
    try:
        key.verify(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
                   rfc8785.dumps(unsigned))  # fmt: skip
    except (InvalidSignature, ValueError):
        return False
    return True


def _receipt(
    reference: str, timestamp: datetime, external_id: str, extensions: dict[str, str] | None
) -> str:
    """A successful Stripe receipt: ``status``, ``method``, ``reference`` (the
    PaymentIntent), ``timestamp``, the challenge's ``externalId`` (the offer id), and the
    intent's own members."""
    receipt = mpp.Receipt(
        status="success",
        timestamp=timestamp,
        reference=reference,
        method="stripe",
        external_id=external_id,
        extensions=extensions,
    )
    return receipt.to_payment_receipt()


def payment_receipt(
    reference: str, settled_at: datetime, external_id: str, captured_minor: int
) -> str:
    """The ``Payment-Receipt`` header value of a capture (draft-stripe-authorize-00,
    Receipt Generation): the common members plus ``intent``, ``capturedAmount``
    (cumulative, minor units) and ``delta`` (what this capture took: the station
    captures once, so the same).

    Any response carrying it must also carry ``Cache-Control: private``
    (`RECEIPT_CACHE_CONTROL`)."""
    captured = str(captured_minor)
    extensions = {"intent": "authorize", "capturedAmount": captured, "delta": captured}
    return _receipt(reference, settled_at, external_id, extensions)


def charge_receipt(reference: str, timestamp: datetime, external_id: str) -> str:
    """The ``Payment-Receipt`` of a payment on the ``charge`` intent, sent with the
    accept's 201 (draft-stripe-charge-00): the common members only."""
    return _receipt(reference, timestamp, external_id, None)


def refund_receipt(
    reference: str, settled_at: datetime, external_id: str, charged_minor: int, refunded_minor: int
) -> str:
    """The settlement's ``Payment-Receipt`` of a ``charge`` session: the charge receipt's
    members plus chargepay's ``intent`` (``charge``), ``chargedAmount`` and
    ``refundedAmount`` (minor units; what the payer keeps paying is their difference)."""
    extensions = {
        "intent": "charge",
        "chargedAmount": str(charged_minor),
        "refundedAmount": str(refunded_minor),
    }
    return _receipt(reference, settled_at, external_id, extensions)


# MPP core: a response with a Payment-Receipt must not be stored by shared caches.
RECEIPT_CACHE_CONTROL = "private"
