"""The payment gateway port (owned by the services): hold, capture, cancel, retrieve.

Amounts are integer minor units (the edge conversion happens in the caller
with `Money.to_minor_units()`). Implementations raise `PaymentDeclined` when
the payer's instrument is refused and `PaymentUnavailable` when the provider
cannot be reached or refuses the operation for another reason; a caller
that gets PaymentUnavailable on capture/cancel must not assume either way
and lets the reconciler retrieve the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PaymentSource:
    """What the MPP credential carried: a PaymentMethod or a Shared Payment Token."""

    kind: str  # "payment_method" | "spt"
    value: str


@dataclass(frozen=True, slots=True)
class PaymentIntentState:
    reference: str
    # requires_capture | succeeded | canceled | requires_payment_method | …
    status: str
    amount_minor: int
    currency: str
    # Captured so far (0 unless status is succeeded).
    captured_minor: int = 0


@dataclass(frozen=True, slots=True)
class RefundState:
    reference: str  # re_…
    status: str  # succeeded | pending | failed | canceled | requires_action
    amount_minor: int


class PaymentGateway(Protocol):
    async def authorize(
        self,
        *,
        amount_minor: int,
        currency: str,
        source: PaymentSource,
        idempotency_key: str,
        metadata: dict[str, str],
        capture_method: str = "manual",
    ) -> PaymentIntentState:
        """Place a manual-capture hold (returned in ``requires_capture``), or with
        ``capture_method="automatic"`` charge at once (returned ``succeeded``)."""
        ...

    async def refund(
        self, reference: str, amount_minor: int, *, idempotency_key: str, metadata: dict[str, str]
    ) -> RefundState:
        """Refund `amount_minor` of the PaymentIntent `reference` (a charge)."""
        ...

    async def find_refund(self, reference: str, session_id: str) -> RefundState | None:
        """The refund of PaymentIntent `reference` whose ``metadata[session_id]`` is
        `session_id`, or None: an unknown refund outcome is resolved by looking."""
        ...

    async def capture(
        self, reference: str, amount_minor: int, *, idempotency_key: str
    ) -> PaymentIntentState: ...

    async def cancel(self, reference: str, *, idempotency_key: str) -> PaymentIntentState: ...

    async def retrieve(self, reference: str) -> PaymentIntentState: ...

    async def payer_method(self, source: PaymentSource) -> str:
        """The payment method behind `source`, as a stable key (an unregistered payer's
        identity): raises PaymentDeclined when it cannot be told."""
        ...

    async def find_hold(
        self, session_id: str, *, created_after: datetime | None = None
    ) -> PaymentIntentState | None:
        """The PaymentIntent made for `session_id` (its metadata), or None if there is none.

        Resolves a hold request whose outcome is unknown by looking; raises
        PaymentUnavailable when Stripe cannot be asked.
        """
        ...
