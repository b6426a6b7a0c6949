"""Fixtures for the OCPP tests: a running station with registered charge points."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from station.app import Station, running_station
from station.settings import Settings
from station.store.charging import register_charge_points
from station.store.db import Database

PASSWORD = "correct-horse-battery-1"
CHARGE_POINTS = ["CP-1", "CP-2", "CP-3"]


def basic(cp_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "http_port": 0,
        "ocpp_port": 0,
        "ocpp_call_timeout_s": 5,
        "ocpp_max_frame_bytes": 1_048_576,
        # These tests drive the OCPP pipeline with the charge points' own tags.
        "ocpp_free_vend": True,
        **overrides,
    }
    return Settings(**values)


async def registered(database_url: str, ids: list[str] = CHARGE_POINTS) -> None:
    db = Database(database_url)
    try:
        await db.upgrade()
        await register_charge_points(db, [(cp, PASSWORD) for cp in ids])
    finally:
        await db.dispose()


@pytest.fixture
async def station(database_url: str) -> AsyncIterator[Station]:
    """A station on both databases with CP-1..CP-3 registered (password PASSWORD)."""
    await registered(database_url)
    async with running_station(settings_for(database_url)) as running:
        yield running


@pytest.fixture
def ocpp_url(station: Station) -> str:
    return f"ws://127.0.0.1:{station.ocpp_port}/ocpp"
