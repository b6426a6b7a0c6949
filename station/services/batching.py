"""Many callers' small requests gathered into one (a query, a writer unit) while one is out.

A reconnect storm asks the same small things thousands of times at once: record
this charge point as connected, look up the stops it is owed. `Batcher` runs
one batch at a time; whatever is asked while one is in flight waits in the
next (at most ``max_batch`` keys each), so a storm costs one query or one
writer unit per batch rather than one per charge point, and a lone request
costs no waiting at all (its batch goes at once). A key asked again before
its batch went is merged into the same entry (``merge``: a later update's
columns over an earlier one's), so a batch holds each key once and the order
of its entries never matters.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")


class _Batch(Generic[K, V, R]):
    __slots__ = ("entries", "outcome")

    def __init__(self) -> None:
        self.entries: dict[K, V] = {}
        self.outcome: asyncio.Future[Mapping[K, R]] = asyncio.get_running_loop().create_future()


def _replace(_earlier: V, later: V) -> V:
    return later


class Batcher(Generic[K, V, R]):
    """Runs ``run(entries)`` for the requests gathered meanwhile, one batch at a time.

    ``run`` gets ``{key: value}`` and returns ``{key: result}`` (keys it leaves
    out get None). If it raises, every caller of that batch gets the error.
    """

    def __init__(
        self,
        run: Callable[[dict[K, V]], Awaitable[Mapping[K, R]]],
        *,
        merge: Callable[[V, V], V] = _replace,
        max_batch: int = 500,
        name: str = "batcher",
    ) -> None:
        self._run = run
        self._merge = merge
        self.max_batch = max_batch
        self._name = name
        self._waiting: deque[_Batch[K, V, R]] = deque()
        self._runner: asyncio.Task[None] | None = None
        self.batches = 0

    async def request(self, key: K, value: V) -> R | None:
        """Add ``key`` to the next batch; its result once that batch has run.

        Safe to cancel: the batch still runs, without waiting for this caller.
        """
        batch = self._waiting[-1] if self._waiting else None
        if batch is None or (key not in batch.entries and len(batch.entries) >= self.max_batch):
            batch = _Batch()
            self._waiting.append(batch)
        if key in batch.entries:
            batch.entries[key] = self._merge(batch.entries[key], value)
        else:
            batch.entries[key] = value
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run_all(), name=self._name)
        outcome = await asyncio.shield(batch.outcome)
        return outcome.get(key)

    async def _run_all(self) -> None:
        while self._waiting:  # what is asked during one batch goes in the next
            batch = self._waiting.popleft()
            self.batches += 1
            try:
                outcome = await self._run(batch.entries)
            except Exception as exc:
                batch.outcome.set_exception(exc)
                batch.outcome.exception()  # read: callers cancelled meanwhile never will
                continue
            except asyncio.CancelledError:
                for left in (batch, *self._waiting):
                    left.outcome.cancel()
                self._waiting.clear()
                raise
            batch.outcome.set_result(outcome)
