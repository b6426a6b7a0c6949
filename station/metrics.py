"""The station's Prometheus metrics, on a registry each `Station` owns.

A registry per station (never the process-wide default) keeps several
stations in one test process apart. Components get the station's
`StationMetrics` and move the figures; ``GET /metrics`` renders them::

    metrics.ocpp_messages.labels(action="MeterValues", direction="in").inc()
    with metrics.stripe_latency.labels(operation="capture").time():
        ...

Gauges of shared state — connected charge points, sessions by status, money
held / captured / released — are refreshed from the database by the
``/metrics`` route at scrape time; counters and histograms are moved by the
code that does the work. Code that only has a database session can find its
station's metrics with `metrics_for(session)`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_BY_ENGINE: weakref.WeakKeyDictionary[Any, StationMetrics] = weakref.WeakKeyDictionary()
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
        # Money figures come from the sessions table at scrape time (all nodes agree).
        self.money_held = Gauge(
            "chargepay_money_held",
            "Money on hold right now for open sessions, in major units.",
            ["currency"],
            registry=registry,
        )
        self.money_captured = Gauge(
            "chargepay_money_captured",
            "Money captured by settled sessions so far, in major units.",
            ["currency"],
            registry=registry,
        )
        self.money_released = Gauge(
            "chargepay_money_released",
            "Held money released back to payers by finished sessions, in major units.",
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
        self.http_rate_limited = Counter(
            "chargepay_http_rate_limited",
            "HTTP requests refused with 429 rate_limited, by the limit that refused them.",
            ["limit"],
            registry=registry,
        )
        self.event_streams = Gauge(
            "chargepay_event_streams",
            "Session event streams (SSE) open on this node.",
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
        self.store_refusals = Counter(
            "chargepay_store_refusals",
            "Units of work (unit) or appended log rows (row) the database refused alone;"
            " the rest of their batch was committed.",
            ["kind"],
            registry=registry,
        )
        self.ocpp_unsolicited = Counter(
            "chargepay_ocpp_unsolicited_answers",
            "CALLRESULT / CALLERROR frames answering no call in flight: dropped, not stored.",
            ["message_type"],
            registry=registry,
        )
        self.ocpp_logins = Counter(
            "chargepay_ocpp_logins",
            "OCPP handshakes admitted, by the check that admitted them: certificate,"
            " cache (this process verified it before), keyed (the row's keyed verifier)"
            " or scrypt.",
            ["check"],
            registry=registry,
        )
        self.ocpp_login_refusals = Counter(
            "chargepay_ocpp_login_refusals",
            "OCPP handshakes refused by authentication: unauthorized (401), throttled"
            " (429, the address past its failed-login ceiling) or unavailable (503).",
            ["reason"],
            registry=registry,
        )
        self.ocpp_handshakes_shed = Counter(
            "chargepay_ocpp_handshakes_shed",
            "Half-open OCPP connections closed: past the bound or the request deadline.",
            registry=registry,
        )
        self.accept_errors = Counter(
            "chargepay_accept_errors",
            "accept() failures for want of resources (EMFILE, ENFILE, …), by port.",
            ["port"],
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

    @staticmethod
    def set_by_currency(gauge: Gauge, amounts: Mapping[str, Decimal]) -> None:
        """Prometheus keeps floats: Decimal money becomes a float here, at the edge."""
        gauge.clear()
        for currency, amount in amounts.items():
            gauge.labels(currency=currency).set(float(amount))

    def set_sessions_by_status(self, counts: Mapping[str, int]) -> None:
        self.sessions.clear()
        for status, count in counts.items():
            self.sessions.labels(status=status).set(count)

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)


def bind_engine(engine: Any, metrics: StationMetrics) -> None:
    """Let code that holds only a database session find its station's metrics."""
    _BY_ENGINE[getattr(engine, "sync_engine", engine)] = metrics


def metrics_for(session: Any) -> StationMetrics | None:
    """The metrics of the station whose engine this (async) session is bound to."""
    bind = getattr(session, "bind", None)
    return _BY_ENGINE.get(getattr(bind, "sync_engine", bind)) if bind is not None else None
