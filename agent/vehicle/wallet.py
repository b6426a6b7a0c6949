"""The wallet: a payment instrument and the agent's own spend policy.

The instrument is a Stripe PaymentMethod (`pm_…`, test mode) or a Shared
Payment Token (`spt_…`); it becomes the MPP credential payload.

The spend policy caps every hold (`per_session`) and the holds and captures
of one calendar day (`per_day`, in the policy's time zone, UTC by default).
A hold is recorded *before* the credential leaves the car — under a key of
the agent's choosing, the offer id — and later narrowed to what was captured
(`settle`) or dropped (`release`). The record lives in a `SpendLedger`: in
memory for a library user, or a small JSON file that survives restarts. The
clock is injected.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from vehicle.errors import SpendLimitExceeded
from vehicle.money import Money

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A payment method (`pm_…`) or a shared payment token (`spt_…`)."""

    value: str

    def __post_init__(self) -> None:
        if not self.value.startswith(("pm_", "spt_")):
            raise ValueError("a payment instrument is a pm_… or an spt_… id")

    @property
    def is_token(self) -> bool:
        return self.value.startswith("spt_")

    def payload(self) -> dict[str, str]:
        """The MPP credential payload (PROTOCOL §3)."""
        return {"spt": self.value} if self.is_token else {"payment_method": self.value}

    def __repr__(self) -> str:  # keep tokens out of logs
        return f"Instrument({self.value[:6]}…)"


@dataclass(frozen=True, slots=True)
class SpendLimits:
    per_session: Money
    per_day: Money

    def __post_init__(self) -> None:
        if self.per_session.currency != self.per_day.currency:
            raise ValueError("spend limits in two currencies")


def check_spend(limits: SpendLimits, spent_today: Money, amount: Money) -> None:
    """Raise `SpendLimitExceeded` unless a hold of `amount` fits the limits (pure)."""
    if amount.currency != limits.per_session.currency:
        raise SpendLimitExceeded(
            f"{amount.currency} payment against {limits.per_session.currency} limits"
        )
    if amount > limits.per_session:
        raise SpendLimitExceeded(
            f"{amount.to_wire()} exceeds the per-session limit {limits.per_session.to_wire()}"
        )
    if spent_today + amount > limits.per_day:
        left = (limits.per_day - spent_today).max(Money.zero(amount.currency))
        raise SpendLimitExceeded(
            f"{amount.to_wire()} exceeds what is left of the daily limit today ({left.to_wire()})"
        )


@dataclass(frozen=True, slots=True)
class SpendEntry:
    day: date
    amount: Money


Entries = dict[str, SpendEntry]


class SpendLedger(Protocol):
    """Where the spend record lives. `update` applies a change atomically: no
    other update (in this process or, for a file, another) runs in between."""

    def entries(self) -> Entries: ...

    def update(self, change: Callable[[Entries], Entries]) -> None: ...


@dataclass
class MemoryLedger:
    _entries: Entries = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def entries(self) -> Entries:
        return dict(self._entries)

    def update(self, change: Callable[[Entries], Entries]) -> None:
        with self._lock:
            self._entries = change(dict(self._entries))


class JsonFileLedger:
    """The spend record as a JSON file, changed under an exclusive lock and
    replaced atomically, so several agents (processes) may share one.

    `{"key": {"day": "2026-11-22", "amount": "20.00", "currency": "usd"}}`;
    entries older than `keep_days` are dropped when the file is written.
    """

    def __init__(self, path: Path, keep_days: int = 31) -> None:
        self.path = path
        self.keep_days = keep_days

    def entries(self) -> Entries:
        try:
            doc: Any = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # An unreadable record must not read as "nothing spent".
            raise SpendLimitExceeded(f"spend record {self.path} unreadable: {exc}") from exc
        try:
            return {
                key: SpendEntry(
                    date.fromisoformat(e["day"]), Money(Decimal(e["amount"]), e["currency"])
                )
                for key, e in doc.items()
            }
        except (AttributeError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise SpendLimitExceeded(f"spend record {self.path} unreadable: {exc}") from exc

    def update(self, change: Callable[[Entries], Entries]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            self._write(change(self.entries()))

    def _write(self, entries: Entries) -> None:
        newest = max((e.day for e in entries.values()), default=None)
        doc = {
            k: {
                "day": e.day.isoformat(),
                "amount": str(e.amount.amount),
                "currency": e.amount.currency,
            }
            for k, e in entries.items()
            if newest is None or (newest - e.day).days <= self.keep_days
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".spend-")
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


class Wallet:
    """An instrument plus the limits it is spent under."""

    def __init__(
        self,
        instrument: Instrument,
        limits: SpendLimits,
        ledger: SpendLedger | None = None,
        clock: Clock = utc_now,
        tz: tzinfo = UTC,
    ) -> None:
        self.instrument = instrument
        self.limits = limits
        self.ledger: SpendLedger = ledger if ledger is not None else MemoryLedger()
        self.clock = clock
        self.tz = tz

    @property
    def currency(self) -> str:
        return self.limits.per_day.currency

    def today(self) -> date:
        return self.clock().astimezone(self.tz).date()

    def _total(self, entries: Entries, day: date) -> Money:
        total = Money.zero(self.currency)
        for entry in entries.values():
            if entry.day == day and entry.amount.currency == self.currency:
                total = total + entry.amount
        return total

    def spent_on(self, day: date) -> Money:
        return self._total(self.ledger.entries(), day)

    def spent_today(self) -> Money:
        return self.spent_on(self.today())

    def allowance(self) -> Money:
        """The largest hold that fits the limits now."""
        left = self.limits.per_day - self.spent_today()
        return left.min(self.limits.per_session).max(Money.zero(self.currency))

    def check(self, amount: Money) -> None:
        """Raise `SpendLimitExceeded` unless a hold of `amount` fits today."""
        check_spend(self.limits, self.spent_today(), amount)

    def hold(self, key: str, amount: Money) -> None:
        """Check and record a hold of `amount` under `key`, before paying it (atomic).

        A second hold under the same key replaces the first (a retried payment).
        """
        day = self.today()

        def change(entries: Entries) -> Entries:
            others = {k: e for k, e in entries.items() if k != key}
            check_spend(self.limits, self._total(others, day), amount)
            return {**others, key: SpendEntry(day, amount)}

        self.ledger.update(change)

    def settle(self, key: str, captured: Money) -> None:
        """Narrow a hold to what was captured (it stays on the day of the hold)."""
        today = self.today()

        def change(entries: Entries) -> Entries:
            entry = entries.get(key)
            return {**entries, key: SpendEntry(entry.day if entry else today, captured)}

        self.ledger.update(change)

    def release(self, key: str) -> None:
        """Drop a hold that was never placed or was cancelled."""
        self.ledger.update(lambda entries: {k: e for k, e in entries.items() if k != key})
