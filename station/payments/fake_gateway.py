"""An in-memory payment gateway for unit tests: Stripe's capture and refund rules, no network.

PaymentMethod ids listed in `declined` are refused; capturing twice or
above the hold raises `PaymentUnavailable` like Stripe's invalid-request
errors do through `StripeGateway`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from datetime import datetime

from station.errors import PaymentDeclined, PaymentUnavailable
from station.services.gateway import PaymentIntentState, PaymentSource, RefundState


class FakeGateway:
    def __init__(self, declined: frozenset[str] = frozenset({"pm_card_chargeDeclined"})) -> None:
        self.intents: dict[str, PaymentIntentState] = {}
        self.declined = declined
        self.calls: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self.sessions: dict[str, str] = {}  # reference -> metadata[session_id]
        self.refunds: dict[str, list[tuple[RefundState, str]]] = {}  # reference -> (refund, sid)

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
        self.calls["authorize"] += 1
        if source.value in self.declined:
            raise PaymentDeclined("Your card was declined.")
        reference = f"pi_fake{next(self._ids)}"
        if capture_method == "automatic":
            state = PaymentIntentState(reference, "succeeded", amount_minor, currency, amount_minor)
        else:
            state = PaymentIntentState(reference, "requires_capture", amount_minor, currency)
        self.intents[state.reference] = state
        self.sessions[state.reference] = metadata.get("session_id", "")
        return state

    async def capture(
        self, reference: str, amount_minor: int, *, idempotency_key: str
    ) -> PaymentIntentState:
        self.calls["capture"] += 1
        state = self._get(reference)
        if state.status != "requires_capture" or amount_minor > state.amount_minor:
            raise PaymentUnavailable("invalid capture")
        state = replace(state, status="succeeded", captured_minor=amount_minor)
        self.intents[reference] = state
        return state

    async def cancel(self, reference: str, *, idempotency_key: str) -> PaymentIntentState:
        self.calls["cancel"] += 1
        state = self._get(reference)
        if state.status != "requires_capture":
            raise PaymentUnavailable("invalid cancel")
        state = replace(state, status="canceled")
        self.intents[reference] = state
        return state

    async def refund(
        self, reference: str, amount_minor: int, *, idempotency_key: str, metadata: dict[str, str]
    ) -> RefundState:
        self.calls["refund"] += 1
        state = self._get(reference)
        made = self.refunds.setdefault(reference, [])
        if state.status != "succeeded" or amount_minor <= 0 or amount_minor > state.captured_minor:
            raise PaymentUnavailable("invalid refund")
        refund = RefundState(f"re_fake{next(self._ids)}", "succeeded", amount_minor)
        made.append((refund, metadata.get("session_id", "")))
        self.intents[reference] = replace(state, captured_minor=state.captured_minor - amount_minor)
        return refund

    async def find_refund(self, reference: str, session_id: str) -> RefundState | None:
        self.calls["list_refunds"] += 1
        found = [r for r, sid in self.refunds.get(reference, []) if sid == session_id]
        return found[-1] if found else None

    async def payer_method(self, source: PaymentSource) -> str:
        return f"{source.kind}:{source.value}"

    async def retrieve(self, reference: str) -> PaymentIntentState:
        self.calls["retrieve"] += 1
        return self._get(reference)

    async def find_hold(
        self, session_id: str, *, created_after: datetime | None = None
    ) -> PaymentIntentState | None:
        self.calls["list"] += 1
        found = [ref for ref, sid in self.sessions.items() if sid == session_id]
        return self.intents[found[-1]] if found else None

    def _get(self, reference: str) -> PaymentIntentState:
        if reference not in self.intents:
            raise PaymentUnavailable(f"no such payment intent {reference}")
        return self.intents[reference]
