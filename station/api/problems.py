"""RFC 9457 problem documents: the one renderer for every HTTP error.

A `ChargepayError` renders with its own code and status; FastAPI's request
validation errors become 422 `validation_error`, and so does a value the
database refuses to store (a NUL in PostgreSQL text, a number out of range);
anything else is a 500 `internal_error` with no internals (and a log line
with the traceback).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from station.errors import ChargepayError, StoreUnavailable
from station.logs import get_logger
from station.store.writer import is_outage

PROBLEM_JSON = "application/problem+json"
_log = get_logger(__name__)

_HTTP_CODES = {
    400: "validation_error",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "validation_error",
    415: "validation_error",
    422: "validation_error",
    429: "rate_limited",
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    problem_type: str | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": problem_type or f"https://chargepay.dev/problems/{code.replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def render_error(exc: ChargepayError, headers: dict[str, str] | None = None) -> JSONResponse:
    return problem(
        exc.status, exc.code, exc.title, exc.detail, headers, exc.problem_type, **exc.extra
    )


async def _on_chargepay_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChargepayError)
    if exc.status >= 500:
        _log.error("http.error", code=exc.code, detail=exc.detail)
    headers = getattr(exc, "headers", None)
    if headers is None and isinstance(exc, StoreUnavailable):  # the port's translated outage
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    return render_error(exc, headers)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return problem(422, "validation_error", "Invalid request", detail, errors=errors)


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return problem(exc.status_code, code, str(exc.detail), str(exc.detail), exc.headers)


# SQLSTATEs that mean "this input cannot be stored": invalid argument, too long,
# out of range, a character PostgreSQL text cannot hold (NUL), bad text form.
_REFUSED_INPUT = frozenset({"22000", "22001", "22003", "22021", "22P02"})


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if isinstance(exc, DataError) or sqlstate in _REFUSED_INPUT:
        # Bad input the edge let through, not a fault of the station.
        _log.warning("http.input_refused_by_database", sqlstate=sqlstate)
        return problem(
            422, "validation_error", "Invalid request", "a value cannot be stored as given"
        )
    return await _on_unexpected(request, exc)


# The database out of reach (connection refused, reset or lost mid-operation, the pool
# waiting past its timeout): the request can be tried again, so a 503 with Retry-After,
# never a 500. Seen in the fault campaign on accepts during PostgreSQL outages.
DATABASE_RETRY_AFTER_S = 2


def _database_unavailable(exc: BaseException) -> JSONResponse:
    _log.warning("http.database_unavailable", error=type(exc).__name__)
    return render_error(
        StoreUnavailable("the database is unreachable; try again"),
        {"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    if is_outage(exc) or isinstance(exc, SATimeoutError):  # the store's own classifier
        return _database_unavailable(exc)
    _log.exception("http.unhandled", error=type(exc).__name__)
    return problem(500, "internal_error", "Internal error", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ChargepayError, _on_chargepay_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)
