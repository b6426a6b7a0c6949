"""The station's Prometheus metrics, on a registry each `Station` owns.

A registry per station (never the process-wide default) keeps several
stations in one test process apart. Components get the station's
`StationMetrics` and move the figures; ``GET /metrics`` renders them::

    metrics.ocpp_messages.labels(action="MeterValues", direction="in").inc()
    with metrics.stripe_latency.labels(operation="capture").time():
        ...

Sessions by status is a gauge the ``/metrics`` route refreshes from the
database at scrape time (`sessions_by_status`); the rest are moved by the
code that does the work.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

STRIPE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)


class StationMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.charge_points_connected = Gauge(
            "chargepay_charge_points_connected",
            "Charge points with an open OCPP connection to this node.",
            ["ocpp_version"],
            registry=registry,
        )
        self.sessions = Gauge(
            "chargepay_sessions",
            "Charging sessions by status (refreshed from the database at scrape time).",
            ["status"],
            registry=registry,
        )
        self.session_transitions = Counter(
            "chargepay_session_transitions",
            "Session status changes made by this node, by the status entered.",
            ["status"],
            registry=registry,
        )
        self.money_held = Counter(
            "chargepay_money_held",
            "Money placed on hold (card authorisations), in major units.",
            ["currency"],
            registry=registry,
        )
        self.money_captured = Counter(
            "chargepay_money_captured",
            "Money captured at settlement, in major units.",
            ["currency"],
            registry=registry,
        )
        self.money_released = Counter(
            "chargepay_money_released",
            "Held money released back to the payer, in major units.",
            ["currency"],
            registry=registry,
        )
        self.limit_refusals = Counter(
            "chargepay_limit_refusals",
            "Authorisations refused by an agent's spending limits.",
            ["currency"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "chargepay_agent_auth_failures",
            "Agent requests refused at the signature check, by reason.",
            ["reason"],
            registry=registry,
        )
        self.ocpp_messages = Counter(
            "chargepay_ocpp_messages",
            "OCPP messages handled, by action and direction (in: from the charge point).",
            ["action", "direction"],
            registry=registry,
        )
        self.ocpp_errors = Counter(
            "chargepay_ocpp_errors",
            "OCPP CALLERRORs sent or received and calls that timed out, by action.",
            ["action", "error"],
            registry=registry,
        )
        self.stripe_latency = Histogram(
            "chargepay_stripe_request_seconds",
            "Latency of Stripe API calls, by operation.",
            ["operation"],
            buckets=STRIPE_BUCKETS,
            registry=registry,
        )
        self.stripe_errors = Counter(
            "chargepay_stripe_errors",
            "Stripe API calls that failed, by operation and error kind.",
            ["operation", "error"],
            registry=registry,
        )

    # Money moves in Decimal; Prometheus keeps floats. Convert here, at the edge.
    def held(self, amount: Decimal, currency: str) -> None:
        self.money_held.labels(currency=currency).inc(float(amount))

    def captured(self, amount: Decimal, currency: str) -> None:
        self.money_captured.labels(currency=currency).inc(float(amount))

    def released(self, amount: Decimal, currency: str) -> None:
        self.money_released.labels(currency=currency).inc(float(amount))

    def set_sessions_by_status(self, counts: Mapping[str, int]) -> None:
        self.sessions.clear()
        for status, count in counts.items():
            self.sessions.labels(status=status).set(count)

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)
