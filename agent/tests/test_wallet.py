import contextlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vehicle.errors import SpendLimitExceeded
from vehicle.money import Money
from vehicle.wallet import (
    Instrument,
    JsonFileLedger,
    MemoryLedger,
    SpendLimits,
    Wallet,
    check_spend,
)


def usd(amount: str) -> Money:
    return Money.parse(amount, "usd")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


LIMITS = SpendLimits(per_session=usd("30.00"), per_day=usd("50.00"))


def wallet(clock: Clock, ledger: MemoryLedger | JsonFileLedger | None = None) -> Wallet:
    return Wallet(Instrument("pm_card_visa"), LIMITS, ledger, clock)


def test_the_instrument_becomes_the_credential_payload() -> None:
    assert Instrument("pm_card_visa").payload() == {"payment_method": "pm_card_visa"}
    assert Instrument("spt_123").payload() == {"spt": "spt_123"}
    with pytest.raises(ValueError):
        Instrument("tok_visa")


def test_a_hold_above_the_per_session_limit_is_refused() -> None:
    with pytest.raises(SpendLimitExceeded, match="per-session"):
        wallet(Clock(datetime(2026, 11, 22, tzinfo=UTC))).hold("off_1", usd("30.01"))


def test_holds_add_up_to_the_daily_limit_and_no_further() -> None:
    w = wallet(Clock(datetime(2026, 11, 22, 9, tzinfo=UTC)))
    w.hold("off_1", usd("30.00"))
    w.hold("off_2", usd("20.00"))

    with pytest.raises(SpendLimitExceeded, match="daily"):
        w.hold("off_3", usd("0.01"))
    assert w.spent_today() == usd("50.00")


def test_settling_narrows_a_hold_to_what_was_captured() -> None:
    w = wallet(Clock(datetime(2026, 11, 22, 9, tzinfo=UTC)))
    w.hold("off_1", usd("30.00"))
    w.hold("off_2", usd("20.00"))

    w.settle("off_1", usd("12.34"))
    w.release("off_2")

    assert w.spent_today() == usd("12.34")
    w.hold("off_3", usd("30.00"))


def test_a_retried_hold_under_the_same_key_replaces_the_first() -> None:
    w = wallet(Clock(datetime(2026, 11, 22, 9, tzinfo=UTC)))
    w.hold("off_1", usd("30.00"))
    w.hold("off_2", usd("20.00"))

    w.hold("off_2", usd("20.00"))

    assert w.spent_today() == usd("50.00")


def test_the_daily_limit_rolls_over_at_midnight_in_the_wallet_time_zone() -> None:
    clock = Clock(datetime(2026, 11, 22, 23, 30, tzinfo=UTC))
    w = wallet(clock)
    w.hold("off_1", usd("30.00"))
    w.hold("off_2", usd("20.00"))
    with pytest.raises(SpendLimitExceeded):
        w.hold("off_3", usd("10.00"))

    clock.now += timedelta(hours=1)  # 00:30 the next day
    w.hold("off_3", usd("10.00"))
    w.settle("off_1", usd("29.00"))  # settled after midnight: stays on its own day

    assert w.spent_today() == usd("10.00")
    assert w.spent_on(datetime(2026, 11, 22).date()) == usd("49.00")


def test_a_local_day_is_not_a_utc_day() -> None:
    clock = Clock(datetime(2026, 11, 22, 23, 30, tzinfo=UTC))
    w = Wallet(Instrument("pm_card_visa"), LIMITS, clock=clock, tz=timezone(timedelta(hours=2)))

    assert w.today() == datetime(2026, 11, 23).date()


def test_the_spend_record_survives_in_a_json_file(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 22, 9, tzinfo=UTC))
    path = tmp_path / "spend.json"
    first = wallet(clock, JsonFileLedger(path))
    first.hold("off_1", usd("30.00"))
    first.hold("off_2", usd("15.00"))

    again = wallet(clock, JsonFileLedger(path))

    assert again.spent_today() == usd("45.00")
    with pytest.raises(SpendLimitExceeded):
        again.hold("off_3", usd("5.01"))


def test_an_unreadable_spend_record_refuses_to_pay(tmp_path: Path) -> None:
    path = tmp_path / "spend.json"
    path.write_text("{not json")

    with pytest.raises(SpendLimitExceeded, match="unreadable"):
        wallet(Clock(datetime(2026, 11, 22, tzinfo=UTC)), JsonFileLedger(path)).check(usd("1.00"))


def test_a_payment_in_another_currency_is_refused() -> None:
    with pytest.raises(SpendLimitExceeded, match="eur"):
        check_spend(LIMITS, usd("0.00"), Money.parse("1.00", "eur"))


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("40"), places=2)


@settings(max_examples=200, deadline=None)
@given(holds=st.lists(amounts, max_size=20))
def test_whatever_is_held_the_day_total_never_passes_the_limit(holds: list[Decimal]) -> None:
    w = wallet(Clock(datetime(2026, 11, 22, 9, tzinfo=UTC)))

    for n, amount in enumerate(holds):
        with contextlib.suppress(SpendLimitExceeded):
            w.hold(f"off_{n}", Money(amount, "usd"))

    assert w.spent_today() <= LIMITS.per_day


def test_agents_sharing_a_spend_file_never_overspend_together(tmp_path: Path) -> None:
    path = tmp_path / "spend.json"
    clock = Clock(datetime(2026, 11, 22, 9, tzinfo=UTC))

    def try_hold(n: int) -> bool:
        try:
            wallet(clock, JsonFileLedger(path)).hold(f"off_{n}", usd("7.00"))
        except SpendLimitExceeded:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        placed = sum(pool.map(try_hold, range(16)))

    assert placed == 7
    assert wallet(clock, JsonFileLedger(path)).spent_today() == usd("49.00")
