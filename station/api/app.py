"""The FastAPI application: routers, problem rendering, health."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from station import __version__
from station.api import problems

if TYPE_CHECKING:
    from station.app import Station


def create_app(station: Station) -> FastAPI:
    app = FastAPI(
        title="chargepay station",
        version=__version__,
        description="Agent and operator API of the chargepay central system (PROTOCOL.md v1).",
        # Served from the installed packages instead of a CDN (station.api.docs).
        docs_url=None,
        redoc_url=None,
    )
    app.state.station = station
    problems.install(app)
    _include_trust(app, station)
    _include_payments(app, station)
    _include_operator_pages(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        if not station.ready.is_set():
            return problems.problem(503, "station_unavailable", "Starting", "listeners not up")
        return JSONResponse({"status": "ok", "version": __version__})

    return app


def _include_trust(app: FastAPI, station: Station) -> None:
    """Agent identity, the operator API, /metrics and the body size cap (issue 4)."""
    from station.api import admin, admin_sessions, admin_tariffs, identity, metrics, open_payers
    from station.api.body_limit import BodyLimit
    from station.api.rate_limits import FailureWindow, InFlight
    from station.metrics import bind_engine, instrument_gateway

    app.include_router(identity.router)
    app.include_router(admin.router)
    app.include_router(admin_sessions.router)
    app.include_router(admin_tariffs.router)
    app.include_router(open_payers.router)
    app.include_router(metrics.router)
    app.add_middleware(
        BodyLimit,
        max_bytes=station.settings.max_body_bytes,
        timeout_s=station.settings.http_body_timeout_s,
    )
    # Added last, so it runs first: a signed burst is cut before its body is even read.
    app.state.in_flight = InFlight(station.settings.max_requests_in_flight_per_agent)
    app.state.in_flight_per_site = InFlight(station.settings.max_requests_in_flight_per_address)
    app.add_middleware(
        identity.SignedRequestBudget,
        budget=app.state.in_flight,
        site_budget=app.state.in_flight_per_site,
        metrics=getattr(station, "metrics", None),
    )
    # Wrong bearer tokens (operator API, /metrics) per client address.
    app.state.bearer_failures = FailureWindow(station.settings.admin_auth_failures_per_minute)
    bind_engine(station.db.engine, station.metrics)
    # Stripe latency, measured at the gateway port (OCPP frames are counted by the FrameLog).
    payments = getattr(station, "payments", None)
    if payments is not None:
        instrument_gateway(payments.gateway, station.metrics)


def _include_payments(app: FastAPI, station: Station) -> None:
    """Negotiation, MPP authorisation and sessions (issue 3); session transitions counted."""
    from station.api import negotiations, sessions
    from station.api.rate_limits import FailureWindow, Slots

    app.include_router(negotiations.router)
    app.include_router(sessions.router)
    app.state.event_streams = Slots[str](station.settings.max_event_streams_per_agent)
    # Negotiations asked for charge points that do not exist (or are not the agent's).
    app.state.unknown_charge_points = FailureWindow(
        station.settings.unknown_charge_points_per_minute
    )
    # Negotiations opened a minute per client site by unregistered payers (one shared agent).
    app.state.open_payer_opens = FailureWindow(station.settings.max_open_negotiations_per_agent)
    payments = getattr(station, "payments", None)
    if payments is not None:
        counter = station.metrics.session_transitions
        payments.events.on_status = lambda status: counter.labels(status=status).inc()


def _include_operator_pages(app: FastAPI) -> None:
    """Offline API docs (/docs, /redoc) and the operator dashboard (issue 12)."""
    from station.api import dashboard, dashboard_events, docs

    docs.install(app)
    dashboard.install(app)
    app.include_router(dashboard_events.router)


def station_of(request: Request) -> Station:
    """FastAPI dependency: the wired station behind this app."""
    return request.app.state.station  # type: ignore[no-any-return]
