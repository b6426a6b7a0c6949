"""`TimedGateway`: a payment gateway that counts and times the calls of another.

It implements the gateway port (`station.services.gateway.PaymentGateway`)
by delegating every operation to the gateway it wraps, so the services hold
it like any other gateway and need no metrics of their own. Per operation it
keeps ``calls`` (a counter, read by benchmarks) and feeds the station's
metrics: the latency of every call (``chargepay_stripe_request_seconds``)
and the failures by error kind (``chargepay_stripe_errors``). The
composition root (`station.bootstrap`) wraps the Stripe gateway in it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

from station.metrics import StationMetrics
from station.services.gateway import (
    PaymentGateway,
    PaymentIntentState,
    PaymentSource,
    RefundState,
)

T = TypeVar("T")


class TimedGateway:
    """The wrapped gateway's operations, each counted and timed (``PaymentGateway``)."""

    def __init__(self, inner: PaymentGateway, metrics: StationMetrics) -> None:
        self.inner = inner
        self._metrics = metrics
        self.calls: Counter[str] = Counter()

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        self.calls[operation] += 1
        started = time.perf_counter()
        try:
            return await call
        except Exception as exc:
            error = getattr(exc, "code", None) or type(exc).__name__
            self._metrics.stripe_errors.labels(operation=operation, error=str(error)).inc()
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.stripe_latency.labels(operation=operation).observe(elapsed)

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
        return await self._timed(
            "authorize",
            self.inner.authorize(
                amount_minor=amount_minor,
                currency=currency,
                source=source,
                idempotency_key=idempotency_key,
                metadata=metadata,
                capture_method=capture_method,
            ),
        )

    async def refund(
        self, reference: str, amount_minor: int, *, idempotency_key: str, metadata: dict[str, str]
    ) -> RefundState:
        return await self._timed(
            "refund",
            self.inner.refund(
                reference, amount_minor, idempotency_key=idempotency_key, metadata=metadata
            ),
        )

    async def find_refund(self, reference: str, session_id: str) -> RefundState | None:
        return await self._timed("find_refund", self.inner.find_refund(reference, session_id))

    async def capture(
        self, reference: str, amount_minor: int, *, idempotency_key: str
    ) -> PaymentIntentState:
        return await self._timed(
            "capture", self.inner.capture(reference, amount_minor, idempotency_key=idempotency_key)
        )

    async def cancel(self, reference: str, *, idempotency_key: str) -> PaymentIntentState:
        return await self._timed(
            "cancel", self.inner.cancel(reference, idempotency_key=idempotency_key)
        )

    async def retrieve(self, reference: str) -> PaymentIntentState:
        return await self._timed("retrieve", self.inner.retrieve(reference))

    async def payer_method(self, source: PaymentSource) -> str:
        return await self._timed("payer_method", self.inner.payer_method(source))

    async def find_hold(
        self, session_id: str, *, created_after: datetime | None = None
    ) -> PaymentIntentState | None:
        return await self._timed(
            "find_hold", self.inner.find_hold(session_id, created_after=created_after)
        )
