"""Counters that bound what one client may cost the station (issue 15 items 7, 8).

`FailureWindow` counts failures (a wrong operator token) per key in fixed
windows: past ``limit`` in the current window the key is refused with 429
``rate_limited`` and ``Retry-After`` until the window ends. It keeps at most
``max_keys`` keys (least recently failed dropped first), so a flood from
many addresses costs bounded memory.

`Slots` bounds what one key holds open at once (an agent's event streams);
`InFlight` is the same count for requests not yet answered, with a bounded
number of keys.

`refuse` raises the 429 and counts it on ``chargepay_http_rate_limited_total``
by the limit's name.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar

from station.errors import RateLimited

if TYPE_CHECKING:
    from station.metrics import StationMetrics

K = TypeVar("K", bound=Hashable)


class FailureWindow:
    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        # key → (window start, failures in it), least recently failed first.
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None if it is under its limit."""
        entry = self._windows.get(key)
        if entry is None:
            return None
        started, failures = entry
        left = started + self.window_s - self._clock()
        if left <= 0:
            del self._windows[key]
            return None
        return left if failures >= self.limit else None

    def record(self, key: str) -> None:
        now = self._clock()
        started, failures = self._windows.pop(key, (now, 0))
        if now - started >= self.window_s:
            started, failures = now, 0
        self._windows[key] = (started, failures + 1)
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)


def refuse(
    metrics: StationMetrics | None, limit: str, detail: str, retry_after_s: float
) -> NoReturn:
    """429 ``rate_limited`` with ``Retry-After`` (whole seconds, at least 1)."""
    if metrics is not None:
        metrics.http_rate_limited.labels(limit=limit).inc()
    raise RateLimited(detail, retry_after_s=max(1, math.ceil(retry_after_s)))


class Slots(Generic[K]):
    """At most ``per_key`` things open at once per key (an agent's event streams)."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: dict[K, int] = {}

    def open(self, key: K) -> int:
        return self._open.get(key, 0)

    def acquire(self, key: K) -> bool:
        held = self._open.get(key, 0)
        if held >= self.per_key:
            return False
        self._open[key] = held + 1
        return True

    def release(self, key: K) -> None:
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
        else:
            self._open.pop(key, None)


class InFlight(Slots[tuple[str, str]]):
    """Requests of one key (an agent's keyid at one client address) not yet answered.

    Keys exist only while they hold something, so the table is as large as
    the requests in flight, never larger.
    """

    def total(self) -> int:
        """Requests in flight, over every key."""
        return sum(self._open.values())
