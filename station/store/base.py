"""The declarative base every table module shares, and column types for money."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, MetaData, Numeric, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; the store keeps UTC-aware times only")
        return value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_text  # SQLAlchemy's own format, written without its slower detour
        return super().bind_processor(dialect)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_text(value: datetime | None) -> str | None:
    """An aware datetime as SQLite text in UTC, ``YYYY-MM-DD HH:MM:SS.ffffff`` as SQLAlchemy writes.

    Runs for every stored time (four per meter value), hence no strftime.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime; the store keeps UTC-aware times only")
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def Amount() -> Numeric[Decimal]:
    """Money in major units, exact: 18 digits, 4 after the point (prices per kWh need 4)."""
    return Numeric(18, 4, asdecimal=True)


def Energy() -> Numeric[Decimal]:
    """Energy in Wh, exact to the milli-watt-hour."""
    return Numeric(20, 3, asdecimal=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


JsonDict = dict[str, Any]
