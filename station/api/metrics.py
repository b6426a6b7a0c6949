"""``GET /metrics``: the station's figures in the Prometheus text format.

Before rendering, the gauges that describe shared state (sessions by status,
connected charge points) are refreshed from the database, so every node
reports the same truth; counters and histograms are this node's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from station.api.admin import check_bearer
from station.api.services import services_of
from station.logs import get_logger
from station.store.charging import ChargePointRow

if TYPE_CHECKING:
    from station.api.services import Services

_log = get_logger(__name__)
# Session statuses in which a card hold is open, and those in which it was let go.
HOLDING = ("authorized", "charging", "stopping")
FINISHED = ("settled", "cancelled")
router = APIRouter(tags=["health"])
_bearer = HTTPBearer(
    auto_error=False, description="CHARGEPAY_METRICS_TOKEN or CHARGEPAY_ADMIN_TOKEN"
)


async def refresh_from_database(services: Services) -> None:
    metrics = services.metrics
    async with services.db.reader() as session:
        connected = await session.execute(
            select(ChargePointRow.ocpp_version, func.count())
            .where(ChargePointRow.connected.is_(True))
            .group_by(ChargePointRow.ocpp_version)
        )
        metrics.charge_points_connected.clear()
        for version, count in connected.all():
            metrics.charge_points_connected.labels(ocpp_version=version or "unknown").set(count)
        try:
            from station.store.payments import SessionRow
        except ImportError:
            return
        by_status = await session.execute(
            select(SessionRow.status, func.count()).group_by(SessionRow.status)
        )
        metrics.set_sessions_by_status({status: count for status, count in by_status.all()})
        held = await session.execute(
            select(SessionRow.currency, func.sum(SessionRow.cap))
            .where(SessionRow.status.in_(HOLDING), SessionRow.payment_reference.is_not(None))
            .group_by(SessionRow.currency)
        )
        metrics.set_by_currency(metrics.money_held, _amounts(held.all()))
        captured = await session.execute(
            select(SessionRow.currency, func.sum(SessionRow.captured))
            .where(SessionRow.status == "settled")
            .group_by(SessionRow.currency)
        )
        metrics.set_by_currency(metrics.money_captured, _amounts(captured.all()))
        released = await session.execute(
            select(
                SessionRow.currency,
                func.sum(SessionRow.cap - func.coalesce(SessionRow.captured, 0)),
            )
            .where(SessionRow.status.in_(FINISHED), SessionRow.payment_reference.is_not(None))
            .group_by(SessionRow.currency)
        )
        metrics.set_by_currency(metrics.money_released, _amounts(released.all()))


def _amounts(rows: Sequence[Any]) -> dict[str, Decimal]:
    return {str(row[0]): Decimal(row[1] or 0) for row in rows}


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
    except SQLAlchemyError as exc:  # still serve this node's own figures
        _log.warning("metrics.refresh_failed", error=type(exc).__name__)
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
