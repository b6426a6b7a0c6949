"""The operator dashboard: ``/dashboard``, a small static page over a JSON snapshot and SSE.

``/dashboard/login`` takes the admin token in a form (POST) and answers
with the dashboard cookie (`station.api.dashboard_auth`). ``/dashboard``
serves the page shipped in ``dashboard_static/`` (HTML, CSS, JS: no CDN, no
framework); the page reads ``/dashboard/api/state``, follows
``/dashboard/events`` (drawing a session's chart from what
`station.api.dashboard_history` kept of it) and suspends or resumes agents through
``/dashboard/api/agents/{id}/suspend|resume`` (CSRF-checked, audited as
``operator:dashboard``). Every page goes out with a strict Content Security
Policy (own origin only, no inline script) and ``no-store``.
"""

from __future__ import annotations

import html
import math
import pathlib
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from station.api import dashboard_auth as auth
from station.api import dashboard_state
from station.api.admin import NO_NUL, AgentId
from station.api.dashboard_auth import DashboardChange, DashboardOperator
from station.api.rate_limits import FailureWindow
from station.api.services import services_of
from station.logs import get_logger
from station.services import agents as agent_registry
from station.services import kill_switch

_log = get_logger(__name__)
STATIC = pathlib.Path(__file__).with_name("dashboard_static")
MAX_FORM_BYTES = 4096
DEFAULT_REASON = "suspended from the dashboard"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, Chromium sends `Origin: null` on the page's own form posts.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")


def _login_page(message: str = "", status_code: int = 200) -> HTMLResponse:
    page = (STATIC / "login.html").read_text(encoding="utf-8")
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(page.replace("<!--error-->", error), status_code, headers=PAGE_HEADERS)


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/dashboard")
async def page(request: Request) -> Response:
    if not auth.signed_in(request):
        return RedirectResponse("/dashboard/login", status_code=303, headers=PAGE_HEADERS)
    body = (STATIC / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(body, headers=PAGE_HEADERS)


@router.get("/dashboard/login")
async def login_form(request: Request) -> Response:
    if auth.signed_in(request):
        return RedirectResponse("/dashboard", status_code=303, headers=PAGE_HEADERS)
    return _login_page()


@router.post("/dashboard/login")
async def login(request: Request) -> Response:
    """The admin token from the form → the dashboard cookie; a wrong one → 401, the form again."""
    admin_token = services_of(request).settings.admin_token
    if not auth.same_origin(request):
        return _login_page("Sign in from this station's own page.", 403)
    if admin_token is None:
        return _login_page("No admin token is configured (CHARGEPAY_ADMIN_TOKEN).", 503)
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded" or len(body) > MAX_FORM_BYTES:
        return _login_page("Send the form as it is on this page.", 400)
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        return _login_page("Send the form as it is on this page.", 400)
    if not auth.token_matches(admin_token, (fields.get("token") or [""])[0]):
        return _wrong_token(request)
    response = RedirectResponse("/dashboard", status_code=303, headers=PAGE_HEADERS)
    response.set_cookie(
        auth.COOKIE,
        auth.issue_cookie(admin_token),
        max_age=auth.SESSION_S,
        path=auth.COOKIE_PATH,
        secure=auth.secure_cookie(request),
        httponly=True,
        samesite="strict",
    )
    _log.info("dashboard.signed_in")
    return response


def _wrong_token(request: Request) -> HTMLResponse:
    """401 and the form again; 429 past the operator API's limit of wrong tokens per address.

    The form and the bearer API share one budget per address (`FailureWindow`).
    """
    services = services_of(request)
    failures: FailureWindow = request.app.state.bearer_failures
    address = request.client.host if request.client else "unknown"
    metrics = services.metrics
    wait = failures.retry_after(address)
    if wait is not None:
        if metrics is not None:
            metrics.http_rate_limited.labels(limit="admin_auth").inc()
        seconds = max(1, math.ceil(wait))
        page = _login_page(f"Too many wrong tokens from this address: wait {seconds} s.", 429)
        page.headers["Retry-After"] = str(seconds)
        return page
    failures.record(address)
    _log.info("dashboard.login_refused", address=address)
    return _login_page("That is not the admin token.", 401)


@router.post("/dashboard/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/dashboard/login", status_code=303, headers=PAGE_HEADERS)
    if auth.same_origin(request):
        response.delete_cookie(auth.COOKIE, path=auth.COOKIE_PATH, httponly=True, samesite="strict")
    return response


@router.get("/dashboard/api/state")
async def state(_actor: DashboardOperator, request: Request) -> JSONResponse:
    """Charge points, recent sessions, money and agents, with the page's CSRF token."""
    services = services_of(request)
    assert services.settings.admin_token is not None
    async with services.units.reader() as uow:
        snapshot: dict[str, Any] = await dashboard_state.snapshot(uow)
    snapshot["csrf"] = auth.csrf_token(services.settings.admin_token, request.cookies[auth.COOKIE])
    return JSONResponse(jsonable_encoder(snapshot), headers={"Cache-Control": "no-store"})


@router.get("/dashboard/api/sessions/{session_id}/points")
async def points(
    session_id: Annotated[str, Path(max_length=64, pattern=NO_NUL)],
    _actor: DashboardOperator,
    request: Request,
) -> JSONResponse:
    """The session's meter points this node has published since it started (for the chart)."""
    history = services_of(request).session_history
    return JSONResponse({"session_id": session_id, "points": history.points(session_id)})


class SuspendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(max_length=500, pattern=NO_NUL)] = ""


@router.post("/dashboard/api/agents/{agent_id}/suspend")
async def suspend(
    agent_id: AgentId, actor: DashboardChange, request: Request, body: SuspendIn | None = None
) -> JSONResponse:
    """Suspend the agent (the kill switch of PROTOCOL §5): its sessions stop and settle."""
    reason = (body.reason if body else "").strip() or DEFAULT_REASON
    outcome = await kill_switch.suspend_agent(
        services_of(request).kill_switch, agent_id, reason=reason, actor=actor
    )
    assert outcome.agent is not None
    return JSONResponse(
        {
            "agent_id": agent_id,
            "status": outcome.agent.status,
            "sessions_stopping": outcome.sessions_stopping,
            "sessions_failed": outcome.sessions_failed,
        }
    )


@router.post("/dashboard/api/agents/{agent_id}/resume")
async def resume(agent_id: AgentId, actor: DashboardChange, request: Request) -> JSONResponse:
    async with services_of(request).units() as uow:
        agent = await agent_registry.resume(uow, agent_id, actor=actor)
        return JSONResponse({"agent_id": agent_id, "status": agent.status})
