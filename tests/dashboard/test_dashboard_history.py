"""The chart's memory keeps recent sessions' meter points, bounded, in publication order."""

from __future__ import annotations

import asyncio

from station.api.dashboard_history import SessionHistory
from station.services.session_events import SessionEvent, SessionEvents


def meter(n: int) -> SessionEvent:
    return SessionEvent("meter", {"at": f"t{n}", "cost": f"{n}.00", "power_kw": "7.000"})


def test_only_meter_points_are_kept_and_each_session_is_bounded() -> None:
    history = SessionHistory(sessions=2, points=3)

    for n in range(5):
        history.record("ses_a", meter(n))
    history.record("ses_a", SessionEvent("status", {"status": "settled"}))

    assert [p["cost"] for p in history.points("ses_a")] == ["2.00", "3.00", "4.00"]
    assert history.points("ses_a")[0]["power_kw"] == "7.000"
    assert history.points("ses_unknown") == []


def test_the_session_heard_from_least_recently_is_forgotten_first() -> None:
    history = SessionHistory(sessions=2, points=10)

    history.record("ses_a", meter(1))
    history.record("ses_b", meter(1))
    history.record("ses_a", meter(2))
    history.record("ses_c", meter(1))

    assert history.points("ses_b") == []
    assert len(history.points("ses_a")) == 2 and len(history.points("ses_c")) == 1


async def test_follow_records_what_is_published_until_told_to_stop() -> None:
    events, history, stop = SessionEvents(), SessionHistory(), asyncio.Event()
    follower = asyncio.create_task(history.follow(events, until=stop))
    await asyncio.sleep(0)

    events.publish("ses_a", "meter", meter(1).data)
    events.publish("ses_a", "meter", meter(2).data)
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(follower, 1)
    events.publish("ses_a", "meter", meter(3).data)

    assert [p["cost"] for p in history.points("ses_a")] == ["1.00", "2.00"]


async def test_an_event_the_history_cannot_keep_is_skipped_and_following_goes_on() -> None:
    events, history, stop = SessionEvents(), SessionHistory(), asyncio.Event()
    follower = asyncio.create_task(history.follow(events, until=stop))
    await asyncio.sleep(0)

    events.publish("ses_a", "meter", None)  # type: ignore[arg-type]
    events.publish("ses_a", "meter", meter(2).data)
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(follower, 1)

    assert [p["cost"] for p in history.points("ses_a")] == ["2.00"]
