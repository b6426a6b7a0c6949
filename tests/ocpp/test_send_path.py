"""Answers go out at once, and a peer that stops reading is cut off, not waited for."""

from __future__ import annotations

import asyncio
from typing import Any

from station.ocpp.v201 import V201Connection


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class _Socket:
    """The part of a websockets connection the send path uses."""

    def __init__(self, *, paused: bool, stuck: bool) -> None:
        self.paused = paused
        self.stuck = stuck
        self.sent: list[str] = []
        self.transport = _Transport()

    async def send(self, text: str) -> None:
        if self.stuck:  # a full write buffer that the peer never drains
            await asyncio.Event().wait()
        self.sent.append(text)


class _Events:
    def charge_point_seen(self, charge_point_id: str) -> None:
        pass


def _connection(socket: _Socket) -> V201Connection:
    events: Any = _Events()
    return V201Connection(
        "CP-1",
        socket,
        events=events,
        frames=None,
        call_timeout_s=0.2,  # type: ignore[arg-type]
    )


async def test_an_answer_is_sent_when_the_transport_takes_it() -> None:
    socket = _Socket(paused=False, stuck=False)

    await _connection(socket).handle_frame('[2,"h1","Heartbeat",{}]')

    assert len(socket.sent) == 1 and socket.sent[0].startswith('[3,"h1",{"currentTime":')
    assert not socket.transport.aborted


async def test_a_peer_that_stops_reading_is_dropped_after_the_call_timeout() -> None:
    socket = _Socket(paused=True, stuck=True)

    async with asyncio.timeout(5):
        await _connection(socket).handle_frame('[2,"h1","Heartbeat",{}]')

    assert socket.sent == [] and socket.transport.aborted
