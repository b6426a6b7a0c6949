"""Requests gathered while a batch is out go together in the next; a failure stays its batch's."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from station.services.batching import Batcher


class Recorder:
    """A batch runner that records its batches and waits for ``gate`` before answering."""

    def __init__(self) -> None:
        self.batches: list[dict[str, int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next = False

    async def run(self, entries: dict[str, int]) -> Mapping[str, int]:
        self.batches.append(dict(entries))
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the query failed")
        return {key: value * 10 for key, value in entries.items()}


async def test_a_lone_request_goes_at_once_and_gets_its_own_result() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run)

    result = await asyncio.wait_for(batcher.request("CP-1", 1), 1)

    assert result == 10
    assert recorder.batches == [{"CP-1": 1}]


async def test_requests_made_while_a_batch_is_out_go_together_in_the_next() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_batch=40)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.request("CP-0", 0))
    await asyncio.sleep(0.01)  # the first batch is out, waiting on the gate

    rest = [asyncio.create_task(batcher.request(f"CP-{n}", n)) for n in range(1, 101)]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    results = await asyncio.gather(first, *rest)

    assert results == [n * 10 for n in range(101)]
    assert [len(batch) for batch in recorder.batches] == [1, 40, 40, 20]


async def test_a_key_asked_again_before_its_batch_goes_is_merged_in_order() -> None:
    recorder = Recorder()
    batcher: Batcher[str, int, int] = Batcher(recorder.run, merge=lambda a, b: a * 100 + b)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.request("CP-0", 0))
    await asyncio.sleep(0.01)

    again = [asyncio.create_task(batcher.request("CP-1", n)) for n in (1, 2, 3)]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    await asyncio.gather(first, *again)

    assert recorder.batches == [{"CP-0": 0}, {"CP-1": 10203}]


async def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run)
    recorder.gate.clear()
    recorder.fail_next = True
    failing = [asyncio.create_task(batcher.request(f"CP-{n}", n)) for n in range(3)]
    await asyncio.sleep(0.01)
    later = asyncio.create_task(batcher.request("CP-9", 9))
    await asyncio.sleep(0.01)

    recorder.gate.set()
    outcomes = await asyncio.gather(*failing, return_exceptions=True)

    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert await later == 90


async def test_a_cancelled_caller_leaves_its_batch_running_for_the_others() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run)
    recorder.gate.clear()
    cancelled = asyncio.create_task(batcher.request("CP-1", 1))
    kept = asyncio.create_task(batcher.request("CP-2", 2))
    await asyncio.sleep(0.01)

    cancelled.cancel()
    await asyncio.sleep(0.01)
    recorder.gate.set()

    assert await kept == 20
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert recorder.batches == [{"CP-1": 1, "CP-2": 2}]
