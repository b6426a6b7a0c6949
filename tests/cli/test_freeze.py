"""`serve` freezes what start-up left alive once the station is ready, not before."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

from station.cli import freeze_after_start


async def test_the_heap_is_frozen_only_once_the_station_is_ready() -> None:
    station = SimpleNamespace(ready=asyncio.Event())
    gc.unfreeze()
    try:
        freezing = asyncio.create_task(freeze_after_start(station))
        await asyncio.sleep(0.01)
        assert gc.get_freeze_count() == 0 and not freezing.done()

        station.ready.set()
        await asyncio.wait_for(freezing, 5)

        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
