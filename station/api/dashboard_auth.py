"""The dashboard's sign-in: a cookie that stands for the admin token, and its CSRF token.

The operator types the admin token into a form (POST, never a URL). The
station answers with an HTTP-only, ``SameSite=Strict`` cookie scoped to
``/dashboard``: ``v1.<expires>.<mac>``, an HMAC-SHA256 of the expiry under a
key derived from the admin token. The token itself never reaches the
browser's storage, a stolen cookie is worthless after ``SESSION_S`` and
every cookie dies when the token is rotated.

A state-changing request (suspend, resume) must also carry
``X-Chargepay-CSRF``: an HMAC of the cookie the page reads from
``/dashboard/api/state``, which a page of another origin cannot read; its
``Origin``, when sent, must be this station's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from pydantic import SecretStr

from station.api.services import services_of
from station.errors import CrossSiteRefused, Unauthenticated

COOKIE = "chargepay_dashboard"
COOKIE_PATH = "/dashboard"
CSRF_HEADER = "x-chargepay-csrf"
SESSION_S = 12 * 3600


def _key(admin_token: SecretStr) -> bytes:
    return hashlib.sha256(
        b"chargepay-dashboard\x00" + admin_token.get_secret_value().encode()
    ).digest()


def _mac(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_matches(admin_token: SecretStr | None, given: str) -> bool:
    """Is ``given`` the admin token? (Constant time; no token configured: never.)"""
    if admin_token is None or not given:
        return False
    return hmac.compare_digest(given.encode(), admin_token.get_secret_value().encode())


def issue_cookie(admin_token: SecretStr, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + SESSION_S)
    payload = f"v1.{expires}"
    return f"{payload}.{_mac(_key(admin_token), payload)}"


def cookie_valid(
    admin_token: SecretStr | None, cookie: str | None, now: float | None = None
) -> bool:
    if admin_token is None or not cookie or len(cookie) > 200:
        return False
    version, _, rest = cookie.partition(".")
    expires, _, mac = rest.partition(".")
    if version != "v1" or not expires.isdigit():
        return False
    if not hmac.compare_digest(mac, _mac(_key(admin_token), f"v1.{expires}")):
        return False
    return int(expires) > (time.time() if now is None else now)


def csrf_token(admin_token: SecretStr, cookie: str) -> str:
    return _mac(_key(admin_token), f"csrf:{cookie}")


def signed_in(request: Request) -> bool:
    token = services_of(request).settings.admin_token
    return cookie_valid(token, request.cookies.get(COOKIE))


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def own_origins(request: Request) -> set[str]:
    """This station's origins: as the request reached it, and ``public_url`` (behind a proxy)."""
    origins = {f"{request.url.scheme}://{request.headers.get('host')}"}
    public_url = services_of(request).settings.public_url
    if public_url:
        origins.add(_origin_of(public_url))
    return origins


def secure_cookie(request: Request) -> bool:
    """Mark the cookie ``Secure`` when the browser reaches the station over HTTPS."""
    public_url = services_of(request).settings.public_url or ""
    return request.url.scheme == "https" or public_url.startswith("https://")


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if origin is not None and origin not in own_origins(request):
        return False
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


async def dashboard_operator(request: Request) -> str:
    """FastAPI dependency for the dashboard's JSON and stream: a valid cookie, else 401."""
    if not signed_in(request):
        raise Unauthenticated("sign in at /dashboard/login")
    return "operator:dashboard"


async def dashboard_operator_csrf(
    request: Request, actor: Annotated[str, Depends(dashboard_operator)]
) -> str:
    """As `dashboard_operator`, for a change: same origin and the CSRF token, else 403."""
    token = services_of(request).settings.admin_token
    assert token is not None  # a valid cookie needs one
    expected = csrf_token(token, request.cookies[COOKIE])
    given = request.headers.get(CSRF_HEADER, "")
    if not same_origin(request) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CrossSiteRefused("cross-site request refused (CSRF token missing or wrong)")
    return actor


DashboardOperator = Annotated[str, Depends(dashboard_operator)]
DashboardChange = Annotated[str, Depends(dashboard_operator_csrf)]
