"""The Stripe gateway: manual-capture PaymentIntents through the real stripe SDK.

Works against api.stripe.com or any Stripe-compatible server
(``settings.stripe_api_base``, e.g. localstripe). Every call has a deadline
(``settings.stripe_timeout_s``) and stripe's exceptions are translated here:
a refused card → `PaymentDeclined`, anything else → `PaymentUnavailable`.
`calls` counts the API calls by operation (a benchmark reports them per
session; the happy path takes two: the hold and the capture).

Cancelling a call (or its deadline) leaves the outcome unknown on Stripe's
side; callers record their intent first and let the reconciler find out.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, TypeVar

import stripe

from station.errors import PaymentDeclined, PaymentUnavailable
from station.logs import get_logger
from station.services.gateway import PaymentIntentState, PaymentSource, RefundState

T = TypeVar("T")
# The Stripe API version of Shared Payment Tokens (pympp's mpp.methods.stripe default).
MACHINE_PAYMENTS_API_VERSION = "2026-07-29.preview"
_log = get_logger(__name__)


def _state(intent: Any) -> PaymentIntentState:
    doc: dict[str, Any] = intent.to_dict() if hasattr(intent, "to_dict") else dict(intent)
    status = str(doc.get("status"))
    captured = 0
    if status == "succeeded":
        received = doc.get("amount_received")
        if isinstance(received, int):
            captured = received
        else:  # localstripe: no amount_received; the charge minus what was released
            charge = doc.get("latest_charge")
            if not isinstance(charge, dict):
                charges = (doc.get("charges") or {}).get("data") or []
                charge = charges[0] if charges else {}
            captured = int(charge.get("amount", 0)) - int(charge.get("amount_refunded", 0))
    return PaymentIntentState(
        reference=str(doc["id"]),
        status=status,
        amount_minor=int(doc.get("amount", 0)),
        currency=str(doc.get("currency", "")),
        captured_minor=captured,
    )


def _refund_state(doc: dict[str, Any]) -> RefundState:
    return RefundState(
        reference=str(doc["id"]),
        status=str(doc.get("status")),
        amount_minor=int(doc.get("amount") or 0),
    )


class StripeGateway:
    def __init__(
        self, *, api_key: str, api_base: str | None = None, timeout_s: float = 20.0
    ) -> None:
        base_addresses: Any = {"api": api_base} if api_base else {}
        self._client = stripe.StripeClient(
            api_key=api_key, base_addresses=base_addresses, max_network_retries=1
        )
        self._timeout_s = timeout_s
        self.calls: Counter[str] = Counter()
        self._list_filters_created = True
        self.list_page_size = 100

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        self.calls[operation] += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except stripe.CardError as exc:
            detail = exc.user_message or "card declined"
            raise PaymentDeclined(detail, decline_code=exc.code) from exc
        except TimeoutError as exc:
            raise PaymentUnavailable(f"stripe {operation} timed out") from exc
        except stripe.StripeError as exc:
            _log.warning(
                "stripe.error", operation=operation, error=type(exc).__name__, detail=str(exc)[:300]
            )
            raise PaymentUnavailable(f"stripe {operation} failed: {type(exc).__name__}") from exc

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
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency,
            "capture_method": capture_method,
            "confirm": True,
            "metadata": metadata,
        }
        options: dict[str, Any] = {"idempotency_key": idempotency_key}
        params["payment_method_types"] = ["card"]
        if source.kind == "spt":
            # Shared Payment Tokens: Stripe's machine-payments API version (as pympp sends).
            # The token goes top-level, as Stripe's shared-payment-tokens guide
            # (docs.stripe.com/agentic-commerce/concepts/shared-payment-tokens) and both
            # MPP SDKs' stripe servers (pympp 0.16, mppx 0.11) send it. The mpp-specs draft's
            # `payment_method_data.shared_payment_granted_token` is the spelling of the
            # 2026-04-22.preview granted-token changelog; checked 2026-12-01, not adopted.
            params["shared_payment_granted_token"] = source.value
            options["stripe_version"] = MACHINE_PAYMENTS_API_VERSION
        else:
            params["payment_method"] = source.value
        try:
            intent = await self._call(
                "authorize",
                self._client.v1.payment_intents.create_async(
                    params,  # type: ignore[arg-type]
                    options=options,  # type: ignore[arg-type]
                ),
            )
        except PaymentUnavailable as exc:
            # A payment method Stripe does not know (or refuses) is the payer's problem.
            if isinstance(exc.__cause__, stripe.InvalidRequestError):
                raise PaymentDeclined("payment method refused") from exc.__cause__
            raise
        state = _state(intent)
        placed = "requires_capture" if capture_method == "manual" else "succeeded"
        if state.status != placed:
            if state.status in ("requires_action", "requires_confirmation"):
                await self.cancel(state.reference, idempotency_key=f"{idempotency_key}_void")
            raise PaymentDeclined(f"hold not placed: {state.status}")
        return state

    async def capture(
        self, reference: str, amount_minor: int, *, idempotency_key: str
    ) -> PaymentIntentState:
        intent = await self._call(
            "capture",
            self._client.v1.payment_intents.capture_async(
                reference,
                {"amount_to_capture": amount_minor},
                options={"idempotency_key": idempotency_key},
            ),
        )
        return _state(intent)

    async def cancel(self, reference: str, *, idempotency_key: str) -> PaymentIntentState:
        intent = await self._call(
            "cancel",
            self._client.v1.payment_intents.cancel_async(
                reference, options={"idempotency_key": idempotency_key}
            ),
        )
        return _state(intent)

    async def find_hold(
        self, session_id: str, *, created_after: datetime | None = None
    ) -> PaymentIntentState | None:
        """The PaymentIntent whose ``metadata[session_id]`` is `session_id`, else None.

        Looks through the list endpoint (from `created_after`, when the server
        takes a ``created`` filter — localstripe does not, and gets the whole
        list), not through search: Stripe's search is eventually consistent,
        so "not found" there would not mean "not made". Newest match wins.
        """
        params: dict[str, Any] = {"limit": self.list_page_size}
        if created_after is not None and self._list_filters_created:
            params["created"] = {"gte": int(created_after.timestamp())}
        found: list[PaymentIntentState] = []
        while True:
            try:
                page = await self._call(
                    "list",
                    self._client.v1.payment_intents.list_async(params),  # type: ignore[arg-type]
                )
            except PaymentUnavailable as exc:
                refused = isinstance(exc.__cause__, stripe.InvalidRequestError)
                if refused and "created" in params:  # a sandbox without list filters
                    self._list_filters_created = False
                    params.pop("created")
                    continue
                raise
            doc: dict[str, Any] = page.to_dict()
            data = doc.get("data") or []
            for intent in data:
                if (intent.get("metadata") or {}).get("session_id") == session_id:
                    found.append(_state(intent))
            if not doc.get("has_more") or not data:
                break
            params["starting_after"] = data[-1]["id"]
        if len(found) > 1:
            _log.warning("stripe.several_holds", session_id=session_id, count=len(found))
        return found[-1] if found else None

    async def refund(
        self, reference: str, amount_minor: int, *, idempotency_key: str, metadata: dict[str, str]
    ) -> RefundState:
        refund = await self._call(
            "refund",
            self._client.v1.refunds.create_async(
                {"payment_intent": reference, "amount": amount_minor, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            ),
        )
        return _refund_state(refund.to_dict())

    async def find_refund(self, reference: str, session_id: str) -> RefundState | None:
        """The refund of `reference` made for `session_id` (its metadata), newest first.

        The list endpoint (filtered by PaymentIntent) is read, never search: a refund
        that was made is there at once."""
        params: dict[str, Any] = {"payment_intent": reference, "limit": self.list_page_size}
        while True:
            page = await self._call(
                "list_refunds",
                self._client.v1.refunds.list_async(params),  # type: ignore[arg-type]
            )
            doc: dict[str, Any] = page.to_dict()
            data = doc.get("data") or []
            for refund in data:
                if (refund.get("metadata") or {}).get("session_id") == session_id:
                    return _refund_state(refund)
            if not doc.get("has_more") or not data:
                return None
            params["starting_after"] = data[-1]["id"]

    async def payer_method(self, source: PaymentSource) -> str:
        """Who pays, as a payment method: a PaymentMethod's id, or for a Shared Payment
        Token the card fingerprint Stripe shows the seller (its granted-token view)."""
        if source.kind != "spt":
            return f"payment_method:{source.value}"
        response = await self._call(
            "granted_token",
            self._client.raw_request_async(
                "get", f"/v1/shared_payment/granted_tokens/{source.value}"
            ),
        )
        doc: dict[str, Any] = self._client.deserialize(response, api_mode="V1").to_dict()
        details = doc.get("payment_method_details") or {}
        kind = str(details.get("type") or "card")
        fingerprint = (details.get(kind) or {}).get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            raise PaymentDeclined("the token's payment method cannot be identified")
        return f"{kind}:{fingerprint}"

    async def retrieve(self, reference: str) -> PaymentIntentState:
        intent = await self._call(
            "retrieve", self._client.v1.payment_intents.retrieve_async(reference)
        )
        return _state(intent)
