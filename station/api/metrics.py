"""``GET /metrics``: the station's figures in the Prometheus text format.

Before rendering, the gauges that describe shared state (sessions by status,
connected charge points) are refreshed from the database, so every node
reports the same truth; counters and histograms are this node's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from station.api.admin import check_bearer
from station.api.services import services_of
from station.errors import StoreUnavailable
from station.logs import get_logger

if TYPE_CHECKING:
    from station.api.services import Services

_log = get_logger(__name__)
router = APIRouter(tags=["health"])
_bearer = HTTPBearer(
    auto_error=False, description="CHARGEPAY_METRICS_TOKEN or CHARGEPAY_ADMIN_TOKEN"
)


async def refresh_from_database(services: Services) -> None:
    metrics = services.metrics
    async with services.units.reader() as uow:
        connected = await uow.reports.connected_by_version()
        by_status = await uow.reports.sessions_by_status()
        money = await uow.reports.money_by_session()
    metrics.charge_points_connected.clear()
    for version, count in connected.items():
        metrics.charge_points_connected.labels(ocpp_version=version or "unknown").set(count)
    metrics.set_sessions_by_status(by_status)
    metrics.set_by_currency(metrics.money_held, money.held)
    metrics.set_by_currency(metrics.money_captured, money.captured)
    metrics.set_by_currency(metrics.money_released, money.released)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Response:
    """Bearer ``CHARGEPAY_METRICS_TOKEN`` (for the scraper) or the admin token."""
    services = services_of(request)
    settings = services.settings
    check_bearer(request, credentials, settings.metrics_token, settings.admin_token)
    try:
        await refresh_from_database(services)
    except StoreUnavailable as exc:  # still serve this node's own figures
        _log.warning("metrics.refresh_failed", error=type(exc).__name__)
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
