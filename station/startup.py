"""What `chargepay` checks before it starts anything, and the one line for each failure.

Every check raises `StartupError` with one line naming what is wrong and
what to do; the command prints it and exits 2, never a traceback:

* `settings_error_line` — a refused setting (pydantic's error, the field's
  own description of a good value);
* `check_secrets` — the secrets `serve` needs are set, long enough, random
  enough and not a placeholder copied from the README;
* `check_tls` — the certificate and key load;
* `check_ports` — the HTTP and OCPP ports are free;
* `open_database` — the database answers and migrates (an unwritable SQLite
  path, an unreachable PostgreSQL);
* `explain` — the last resort for an `OSError` from opening a file.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import ssl
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
from pydantic.fields import FieldInfo
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from station.settings import Settings
from station.store.db import Database


class StartupError(Exception):
    """A problem the operator fixes; its message is the one line to print."""


# --- settings -----------------------------------------------------------------------


def settings_error_line(exc: pydantic.ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not loc:
        return f"bad setting: {message}"
    name = loc[0]
    variable = f"CHARGEPAY_{name.upper()}"
    field = Settings.model_fields.get(name)
    secret = field is not None and "SecretStr" in repr(field.annotation)
    given = "" if secret or "input" not in first else f"={_short(first['input'])}"
    hint = f"; set {variable} to {expected(field)}" if field else ""
    return f"bad setting {variable}{given}: {message}{hint}"


_KINDS: dict[Any, str] = {
    int: "a whole number",
    float: "a number",
    Decimal: "a decimal number",
    bool: "true or false",
}
_BOUNDS = (("gt", "more than"), ("ge", "at least"), ("lt", "less than"), ("le", "at most"))


def expected(field: FieldInfo) -> str:
    """What a good value of a setting is: its description, else told from its type and bounds."""
    if field.description:
        return field.description
    bounds = [
        f"{word} {getattr(m, attr)}"
        for m in field.metadata
        for attr, word in _BOUNDS
        if getattr(m, attr, None) is not None
    ]
    kind = _KINDS.get(field.annotation, "a valid value")
    return kind + (f", {' and '.join(bounds)}" if bounds else "")


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= 200 else text[:197] + "…'"


# --- secrets ------------------------------------------------------------------------

# Text that marks a value copied from documentation rather than generated.
PLACEHOLDERS = ("…", "...", "<", ">", "changeme", "change-me", "example", "placeholder", "xxxx")


def estimated_entropy_bits(value: str) -> float:
    """Shannon entropy of the value's own characters, times its length.

    A generous estimate for a random string and a low one for words and
    repetition ("aaaa…" is 0, "password1234" about 40).
    """
    if not value:
        return 0.0
    counts = Counter(value)
    per_char = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return per_char * len(value)


def _weakness(value: str, *, min_length: int, min_bits: float) -> str | None:
    lowered = value.lower()
    if any(mark in lowered for mark in PLACEHOLDERS):
        return "is still a placeholder"
    if not value.isascii() or not value.isprintable():
        return "holds characters that are not printable ASCII"
    if len(value) < min_length:
        return f"is {len(value)} characters, fewer than {min_length}"
    if estimated_entropy_bits(value) < min_bits:
        return "is not random enough (too few distinct characters)"
    return None


GENERATE = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
SECRETS = {
    # field: (minimum length, minimum estimated entropy in bits)
    "admin_token": (24, 80.0),
    "secret_key": (32, 90.0),
}
# Checked like the admin token when set.
OPTIONAL_SECRETS = ("metrics_token",)
STRIPE_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")


def check_secrets(settings: Settings) -> None:
    """The secrets `serve` needs: set, long, random, and not a README placeholder."""
    for name, (min_length, min_bits) in SECRETS.items():
        variable = f"CHARGEPAY_{name.upper()}"
        secret = getattr(settings, name)
        if secret is None or not secret.get_secret_value():
            raise StartupError(f"{variable} is not set; {GENERATE} (or run serve --sandbox)")
        weakness = _weakness(secret.get_secret_value(), min_length=min_length, min_bits=min_bits)
        if weakness:
            raise StartupError(f"{variable} {weakness}; {GENERATE}")
    for name in OPTIONAL_SECRETS:
        secret = getattr(settings, name, None)
        if secret is not None:
            weakness = _weakness(secret.get_secret_value(), min_length=24, min_bits=80.0)
            if weakness:
                raise StartupError(f"CHARGEPAY_{name.upper()} {weakness}; {GENERATE}")
    key = settings.stripe_api_key
    where = "https://dashboard.stripe.com/apikeys (or run serve --sandbox)"
    if key is None or not key.get_secret_value():
        raise StartupError(f"CHARGEPAY_STRIPE_API_KEY is not set; take a secret key from {where}")
    value = key.get_secret_value()
    weakness = _weakness(value, min_length=len("sk_test_") + 8, min_bits=0)
    if weakness is None and not value.startswith(STRIPE_PREFIXES):
        weakness = "does not start with sk_test_, sk_live_, rk_test_ or rk_live_"
    if weakness:
        raise StartupError(f"CHARGEPAY_STRIPE_API_KEY {weakness}; take a secret key from {where}")


# --- TLS and ports ------------------------------------------------------------------


def check_tls(settings: Settings) -> None:
    cert, key, ca = settings.ocpp_tls_cert, settings.ocpp_tls_key, settings.ocpp_tls_ca
    if cert is None or key is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise StartupError(
            f"cannot load the TLS certificate {cert} with key {key} ({_reason(exc)}); "
            "set CHARGEPAY_OCPP_TLS_CERT and CHARGEPAY_OCPP_TLS_KEY to a PEM certificate "
            "and its own private key"
        ) from None
    if ca is not None:
        try:
            context.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as exc:
            raise StartupError(
                f"cannot load the client CAs {ca} ({_reason(exc)}); "
                "set CHARGEPAY_OCPP_TLS_CA to a PEM file of CA certificates"
            ) from None


def check_ports(settings: Settings) -> None:
    """Both listeners can bind (checked up front, so the line names the setting)."""
    for what, host, port in (
        ("HTTP", settings.http_host, settings.http_port),
        ("OCPP", settings.ocpp_host, settings.ocpp_port),
    ):
        variable = f"CHARGEPAY_{what}_PORT"
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise StartupError(
                        f"the {what} port {host}:{port} is in use; stop what holds it "
                        f"or set {variable} (or --{what.lower()}-port) to a free port"
                    ) from None
                raise StartupError(
                    f"cannot listen on {host}:{port} for {what} ({_reason(exc)}); "
                    f"set CHARGEPAY_{what}_HOST and {variable} to an address of this machine"
                ) from None


# --- the database -------------------------------------------------------------------


async def open_database(url: str) -> Database:
    """A migrated database, or a StartupError saying why it cannot be opened."""
    _check_sqlite_path(url)
    db = Database(url)
    try:
        await db.upgrade()
    except BaseException as exc:
        await db.dispose()
        line = database_problem(exc, url)
        if line is None:
            raise
        raise StartupError(line) from None
    return db


def _check_sqlite_path(url: str) -> None:
    """A SQLite file must be creatable or writable (checked before a driver thread starts)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database or "")
    if path.exists():
        problem = None if os.access(path, os.R_OK | os.W_OK) else "the file is not writable"
    elif not path.parent.is_dir():
        problem = f"the folder {path.parent} does not exist"
    else:
        problem = None if os.access(path.parent, os.W_OK) else "its folder is not writable"
    if problem:
        raise StartupError(
            f"cannot write the SQLite database {path} ({problem}); "
            "make its folder exist and writable, or set CHARGEPAY_DATABASE_URL to another path"
        )


def database_problem(exc: BaseException, url: str) -> str | None:
    """The one line for a database that cannot be opened, or None if `exc` is something else."""
    parsed = make_url(url)
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if parsed.get_backend_name() == "sqlite":
        if not isinstance(exc, SQLAlchemyError | OSError):
            return None
        path = Path(parsed.database or "")
        return (
            f"cannot write the SQLite database {path} ({_reason(cause)}); "
            "make its folder exist and writable, or set CHARGEPAY_DATABASE_URL to another path"
        )
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"
    if isinstance(exc, OSError | SQLAlchemyError) or type(cause).__module__.startswith("asyncpg"):
        return (
            f"cannot reach PostgreSQL at {where} ({_reason(cause)}); "
            "check that it runs and accepts this user, or fix CHARGEPAY_DATABASE_URL"
        )
    return None


# --- the last resort ----------------------------------------------------------------


def explain(exc: BaseException) -> str | None:
    """One line for an operator-fixable failure that escaped the checks, else None."""
    leaves = list(_leaves(exc))
    for leaf in leaves:
        if isinstance(leaf, StartupError):
            return str(leaf)
    for leaf in leaves:
        if isinstance(leaf, OSError) and leaf.errno == errno.EADDRINUSE:
            return f"a port is in use ({_reason(leaf)}); stop what holds it or choose another port"
        if isinstance(leaf, OSError) and leaf.filename is not None:
            return f"cannot use {leaf.filename} ({_reason(leaf)}); check the path and its folder"
    return None


def _leaves(exc: BaseException) -> Any:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("(sqlite3.OperationalError) ")
