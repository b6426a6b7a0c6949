"""The operator-wide subscription hears every session's events, with their ids."""

from __future__ import annotations

from station.services.session_events import SessionEvent, SessionEvents


async def test_subscribe_all_hears_every_session_with_its_id() -> None:
    events = SessionEvents()

    async with events.subscribe_all() as everything, events.subscribe("ses_a") as only_a:
        events.publish("ses_a", "meter", {"cost": "1.00"})
        events.publish("ses_b", "status", {"status": "settled"})

        heard = [everything.get_nowait(), everything.get_nowait()]
        assert only_a.qsize() == 1

    assert heard == [
        ("ses_a", SessionEvent("meter", {"cost": "1.00"})),
        ("ses_b", SessionEvent("status", {"status": "settled"})),
    ]


async def test_a_slow_operator_reader_loses_the_oldest_events_and_leaves_nothing_behind() -> None:
    events = SessionEvents()

    async with events.subscribe_all(queue_size=2) as everything:
        for n in range(3):
            events.publish("ses_a", "meter", {"n": n})

        kept = [everything.get_nowait()[1].data["n"], everything.get_nowait()[1].data["n"]]
    events.publish("ses_a", "meter", {"n": 3})

    assert kept == [1, 2]
    assert everything.empty()
