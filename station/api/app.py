"""The FastAPI application: routers, problem rendering, health."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from station import __version__
from station.api import problems

if TYPE_CHECKING:
    from station.api.services import Services


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="chargepay station",
        version=__version__,
        description="Agent and operator API of the chargepay central system (PROTOCOL.md v1).",
        # Served from the installed packages instead of a CDN (station.api.docs).
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    problems.install(app)
    _include_trust(app, services)
    _include_payments(app, services)
    _include_operator_pages(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        if not services.ready.is_set():
            return problems.problem(503, "station_unavailable", "Starting", "listeners not up")
        return JSONResponse({"status": "ok", "version": __version__})

    return app


def _include_trust(app: FastAPI, services: Services) -> None:
    """Agent identity, the operator API, /metrics and the body size cap (issue 4)."""
    from station.api import admin, admin_sessions, admin_tariffs, identity, metrics, open_payers
    from station.api.body_limit import BodyLimit
    from station.api.rate_limits import FailureWindow, InFlight

    app.include_router(identity.router)
    app.include_router(admin.router)
    app.include_router(admin_sessions.router)
    app.include_router(admin_tariffs.router)
    app.include_router(open_payers.router)
    app.include_router(metrics.router)
    app.add_middleware(
        BodyLimit,
        max_bytes=services.settings.max_body_bytes,
        timeout_s=services.settings.http_body_timeout_s,
    )
    # Added last, so it runs first: a signed burst is cut before its body is even read.
    app.state.in_flight = InFlight(services.settings.max_requests_in_flight_per_agent)
    app.state.in_flight_per_site = InFlight(services.settings.max_requests_in_flight_per_address)
    app.add_middleware(
        identity.SignedRequestBudget,
        budget=app.state.in_flight,
        site_budget=app.state.in_flight_per_site,
        metrics=services.metrics,
    )
    # Wrong bearer tokens (operator API, /metrics) per client address.
    app.state.bearer_failures = FailureWindow(services.settings.admin_auth_failures_per_minute)


def _include_payments(app: FastAPI, services: Services) -> None:
    """Negotiation, MPP authorisation and sessions (issue 3); session transitions counted."""
    from station.api import negotiations, sessions
    from station.api.rate_limits import FailureWindow, Slots

    app.include_router(negotiations.router)
    app.include_router(sessions.router)
    app.state.event_streams = Slots[str](services.settings.max_event_streams_per_agent)
    # Negotiations asked for charge points that do not exist (or are not the agent's).
    app.state.unknown_charge_points = FailureWindow(
        services.settings.unknown_charge_points_per_minute
    )
    # Negotiations opened a minute per client site by unregistered payers (one shared agent).
    app.state.open_payer_opens = FailureWindow(services.settings.max_open_negotiations_per_agent)


def _include_operator_pages(app: FastAPI) -> None:
    """Offline API docs (/docs, /redoc) and the operator dashboard (issue 12)."""
    from station.api import dashboard, dashboard_events, docs

    docs.install(app)
    dashboard.install(app)
    app.include_router(dashboard_events.router)
