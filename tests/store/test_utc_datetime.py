"""UTC times are stored on SQLite in exactly SQLAlchemy's own text format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects.sqlite import DATETIME, pysqlite

from station.store.base import UtcDateTime

SQLITE = pysqlite.dialect()
OURS = UtcDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
SQLALCHEMY = DATETIME().bind_processor(SQLITE)

zones = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
times = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=zones)


@given(times)
def test_any_aware_time_is_written_as_sqlalchemy_writes_its_utc_value(value: datetime) -> None:
    assert OURS is not None and SQLALCHEMY is not None
    assert OURS(value) == SQLALCHEMY(value.astimezone(UTC).replace(tzinfo=None))


def test_naive_times_are_refused() -> None:
    assert OURS is not None
    with pytest.raises(ValueError, match="naive"):
        OURS(datetime(2026, 1, 1))
