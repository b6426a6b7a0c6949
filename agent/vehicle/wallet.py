"""The wallet: a payment instrument and the agent's own spend policy.

The instrument is a Stripe PaymentMethod (`pm_…`, test mode) or a Shared
Payment Token (`spt_…`); it becomes the MPP credential payload.

The spend policy caps every hold (`per_session`) and the holds and captures
of one calendar day (`per_day`, in the policy's time zone, UTC by default).
Both limits are the owner's explicit choice; a payment that does not fit is
refused before the credential leaves the car, saying which limit and how
much of it is left.

What the record counts (a `SpendLedger`, under a key of the agent's choosing,
the offer id):

- `reserve` — a payment in flight. It counts against the limits (two agents
  sharing a record cannot overspend together) but only until its challenge
  expires: if the station never answers, no hold outlives that.
- `placed` — the station answered 201: the hold is on the card, counted for
  the cap.
- `release` — the station refused (any answer but 201), or the session was
  cancelled: nothing is counted.
- `settle` — the session settled: the entry narrows to what was captured;
  the rest of the hold is released with the settlement.

The record lives in memory for a library user, or in a small JSON file that
survives restarts (`JsonFileLedger`; the CLI keeps it in the platform's state
directory). The clock is injected.
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
from typing import TYPE_CHECKING, Any, Protocol

from vehicle.errors import SpendLimitExceeded
from vehicle.money import Money

if TYPE_CHECKING:
    from vehicle.spt import TokenIssuer

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
            f"a {amount.currency} payment against limits in {limits.per_session.currency}"
        )
    if amount > limits.per_session:
        raise SpendLimitExceeded(
            f"a hold of {amount.to_wire()} {amount.currency} is above the per-session limit "
            f"of {limits.per_session.to_wire()} {amount.currency}"
        )
    if spent_today + amount > limits.per_day:
        left = (limits.per_day - spent_today).max(Money.zero(amount.currency))
        raise SpendLimitExceeded(
            f"a hold of {amount.to_wire()} {amount.currency} does not fit the daily limit of "
            f"{limits.per_day.to_wire()} {amount.currency}: {spent_today.to_wire()} already "
            f"held or spent today, {left.to_wire()} left"
        )


PENDING, PLACED, SETTLED = "pending", "placed", "settled"


@dataclass(frozen=True, slots=True)
class SpendEntry:
    day: date
    amount: Money
    # `pending` until the hold is known to be placed; counted only until `until`.
    state: str = PLACED
    until: datetime | None = None

    def counts(self, now: datetime) -> bool:
        return self.state != PENDING or (self.until is not None and now < self.until)


Entries = dict[str, SpendEntry]


class SpendLedger(Protocol):
    """Where the spend record lives. `update` applies a change atomically: no
    other update (in this process or, for a file, another) runs in between."""

    def entries(self) -> Entries: ...

    def update(self, change: Callable[[Entries], Entries]) -> None: ...


@dataclass
class MemoryLedger:
    """The spend record in memory (a library user's default; lost with the process)."""

    _entries: Entries = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __str__(self) -> str:
        return "memory"

    def entries(self) -> Entries:
        return dict(self._entries)

    def update(self, change: Callable[[Entries], Entries]) -> None:
        with self._lock:
            self._entries = change(dict(self._entries))


class JsonFileLedger:
    """The spend record as a JSON file, changed under an exclusive lock and
    replaced atomically, so several agents (processes) may share one.

    `{"off_…": {"day": "2026-11-22", "amount": "20.00", "currency": "usd",
    "state": "placed"}}` (a pending entry also has `until`); entries older than
    `keep_days` are dropped when the file is written.
    """

    def __init__(self, path: Path, keep_days: int = 31) -> None:
        self.path = path
        self.keep_days = keep_days

    def __str__(self) -> str:
        return str(self.path)

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
                    date.fromisoformat(e["day"]),
                    Money(Decimal(e["amount"]), e["currency"]),
                    e.get("state", PLACED),
                    datetime.fromisoformat(e["until"]) if e.get("until") else None,
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
        doc: dict[str, dict[str, str]] = {}
        for k, e in entries.items():
            if newest is not None and (newest - e.day).days > self.keep_days:
                continue
            doc[k] = {
                "day": e.day.isoformat(),
                "amount": str(e.amount.amount),
                "currency": e.amount.currency,
                "state": e.state,
            }
            if e.until is not None:
                doc[k]["until"] = e.until.isoformat()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".spend-")
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


class Wallet:
    """An instrument plus the limits it is spent under.

    With an `issuer` (`vehicle.spt.TokenIssuer`) each payment is made with a
    Shared Payment Token issued for its challenge, never with the instrument
    itself.
    """

    def __init__(
        self,
        instrument: Instrument,
        limits: SpendLimits,
        ledger: SpendLedger | None = None,
        clock: Clock = utc_now,
        tz: tzinfo = UTC,
        issuer: TokenIssuer | None = None,
    ) -> None:
        self.instrument = instrument
        self.issuer = issuer
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
        now = self.clock()
        total = Money.zero(self.currency)
        for entry in entries.values():
            if entry.day == day and entry.amount.currency == self.currency and entry.counts(now):
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

    def _record(self, key: str, amount: Money, state: str, until: datetime | None) -> None:
        day = self.today()

        def change(entries: Entries) -> Entries:
            others = {k: e for k, e in entries.items() if k != key}
            check_spend(self.limits, self._total(others, day), amount)
            return {**others, key: SpendEntry(day, amount, state, until)}

        self.ledger.update(change)

    def reserve(self, key: str, amount: Money, until: datetime) -> None:
        """Check `amount` against the limits and count it while the payment is in flight,
        until `until` at the latest (atomic). A second reservation under the same key
        replaces the first (a retried payment)."""
        self._record(key, amount, PENDING, until)

    def placed(self, key: str) -> None:
        """The station placed the hold reserved under `key`: it counts until settled."""

        def change(entries: Entries) -> Entries:
            entry = entries.get(key)
            if entry is None or entry.state != PENDING:
                return entries
            return {**entries, key: SpendEntry(entry.day, entry.amount, PLACED)}

        self.ledger.update(change)

    def hold(self, key: str, amount: Money) -> None:
        """Check and record a hold already placed (`reserve` + `placed` in one)."""
        self._record(key, amount, PLACED, None)

    def settle(self, key: str, captured: Money) -> None:
        """Narrow a hold to what was captured; the rest is released (it stays on the day
        of the hold). Nothing captured: the entry goes."""
        today = self.today()

        def change(entries: Entries) -> Entries:
            if captured.amount <= 0:
                return {k: e for k, e in entries.items() if k != key}
            entry = entries.get(key)
            return {**entries, key: SpendEntry(entry.day if entry else today, captured, SETTLED)}

        self.ledger.update(change)

    def release(self, key: str) -> None:
        """Drop a hold that was never placed or was cancelled."""
        self.ledger.update(lambda entries: {k: e for k, e in entries.items() if k != key})
