"""Translate what the database raises into the persistence port's errors, where it enters.

A unique violation is recognised by its code, never by its message: SQLSTATE
23505 on PostgreSQL (asyncpg), SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY on
SQLite. An outage as the writer classifies it (`station.store.writer.is_outage`:
a lost or refused connection, SQLite's "database is locked" after its busy
timeout, PostgreSQL's connection and shutdown classes) is `StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from station.errors import StoreUnavailable
from station.services.unit_of_work import AlreadyExists
from station.store.writer import is_outage

PG_UNIQUE_VIOLATION = "23505"
SQLITE_UNIQUE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


def is_unique_violation(exc: BaseException) -> bool:
    """Did this IntegrityError come from a unique key (not a foreign key, not a NOT NULL)?"""
    for cause in _causes(exc):
        if getattr(cause, "sqlstate", None) == PG_UNIQUE_VIOLATION:
            return True
        if getattr(cause, "pgcode", None) == PG_UNIQUE_VIOLATION:
            return True
        if getattr(cause, "sqlite_errorname", None) in SQLITE_UNIQUE:
            return True
    return False


def constraint_name(exc: BaseException) -> str | None:
    """The violated constraint's name where the database says it (PostgreSQL), else None."""
    for cause in _causes(exc):
        name = getattr(cause, "constraint_name", None)
        if isinstance(name, str):
            return name
    return None


def translate(exc: BaseException, *, key: str | None = None) -> BaseException | None:
    """The port's error for a database exception, or None when it is not one we translate."""
    if isinstance(exc, IntegrityError) and is_unique_violation(exc):
        return AlreadyExists(f"{key or 'record'} already exists", key=key)
    if isinstance(exc, StoreUnavailable):
        return None  # already the port's
    if isinstance(exc, PoolTimeout) or is_outage(exc):
        return StoreUnavailable("the database is unavailable; try again")
    return None


@contextmanager
def translated(*, key: str | None = None) -> Iterator[None]:
    """Raise the port's error instead of the database's (the original chained as its cause)."""
    try:
        yield
    except (DBAPIError, PoolTimeout, OSError) as exc:
        mapped = translate(exc, key=key)
        if mapped is None:
            raise
        raise mapped from exc
