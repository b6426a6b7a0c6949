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


def payment_receipt(
    reference: str, settled_at: datetime, external_id: str, captured_minor: int
) -> str:
    """The ``Payment-Receipt`` header value of a capture (draft-stripe-authorize-00,
    Receipt Generation): ``status``, ``method``, ``intent``, ``reference`` (the
    PaymentIntent), ``capturedAmount`` (cumulative, minor units), ``delta`` (what this
    capture took: the station captures once, so the same), ``timestamp`` and the
    challenge's ``externalId`` (the offer id).

    Any response carrying it must also carry ``Cache-Control: private``
    (`RECEIPT_CACHE_CONTROL`)."""
    receipt = mpp.Receipt(
        status="success",
        timestamp=settled_at,
        reference=reference,
        method="stripe",
        external_id=external_id,
        extensions={
            "intent": "authorize",
            "capturedAmount": str(captured_minor),
            "delta": str(captured_minor),
        },
    )
    return receipt.to_payment_receipt()


def charge_receipt(reference: str, timestamp: datetime, external_id: str) -> str:
    """The ``Payment-Receipt`` of a payment on the ``charge`` intent, sent with the
    accept's 201 (draft-stripe-charge-00): ``status``, ``method``, ``reference`` (the
    PaymentIntent), ``timestamp`` and the challenge's ``externalId`` (the offer id)."""
    receipt = mpp.Receipt(
        status="success",
        timestamp=timestamp,
        reference=reference,
        method="stripe",
        external_id=external_id,
    )
    return receipt.to_payment_receipt()


def refund_receipt(
    reference: str, settled_at: datetime, external_id: str, charged_minor: int, refunded_minor: int
) -> str:
    """The settlement's ``Payment-Receipt`` of a ``charge`` session: the charge receipt's
    members plus chargepay's ``intent`` (``charge``), ``chargedAmount`` and
    ``refundedAmount`` (minor units; what the payer keeps paying is their difference)."""
    receipt = mpp.Receipt(
        status="success",
        timestamp=settled_at,
        reference=reference,
        method="stripe",
        external_id=external_id,
        extensions={
            "intent": "charge",
            "chargedAmount": str(charged_minor),
            "refundedAmount": str(refunded_minor),
        },
    )
    return receipt.to_payment_receipt()


# MPP core: a response with a Payment-Receipt must not be stored by shared caches.
RECEIPT_CACHE_CONTROL = "private"
