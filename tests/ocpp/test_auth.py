"""The failed-login throttle: delays per (address, id), a per-address ceiling, bounded memory."""

from __future__ import annotations

import tracemalloc

from station.ocpp.auth import ADDRESS_WINDOW_S, FailureThrottle, address_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: FakeClock, **overrides: float) -> FailureThrottle:
    values: dict = {
        "free": 2,
        "base_delay_s": 0.5,
        "max_delay_s": 4.0,
        "address_ceiling": 1000,
        "max_entries": 1000,
        **overrides,
    }
    return FailureThrottle(clock=clock, **values)


def test_failures_of_a_pair_are_free_then_delayed_doubling_up_to_the_cap() -> None:
    limiter = throttle(FakeClock())

    delays = [limiter.fail("10.0.0.1", "CP-1") for _ in range(8)]

    assert delays == [0, 0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_the_delay_is_per_address_and_id() -> None:
    limiter = throttle(FakeClock())
    for _ in range(5):
        limiter.fail("10.0.0.1", "CP-1")

    assert limiter.fail("10.0.0.1", "CP-2") == 0  # the same site, another charge point
    assert limiter.fail("10.0.0.2", "CP-1") == 0  # the same id, another address


def test_the_address_ceiling_holds_for_its_minute_then_lifts() -> None:
    clock = FakeClock()
    limiter = throttle(clock, address_ceiling=3)
    for n in range(3):
        assert limiter.over_ceiling("10.0.0.1") is None
        limiter.fail("10.0.0.1", f"CP-{n}")

    blocked = limiter.over_ceiling("10.0.0.1")
    other_address = limiter.over_ceiling("10.0.0.2")
    clock.now += ADDRESS_WINDOW_S
    later = limiter.over_ceiling("10.0.0.1")

    assert blocked is not None and 0 < blocked <= ADDRESS_WINDOW_S
    assert other_address is None
    assert later is None


def test_ipv6_addresses_of_one_site_share_a_ceiling() -> None:
    assert address_key("2001:db8:1:2::10") == address_key("2001:db8:1:2:ffff::1")
    assert address_key("2001:db8:1:2::10") != address_key("2001:db8:1:3::10")
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"


def test_100k_distinct_ids_and_addresses_keep_the_state_bounded() -> None:
    limiter = throttle(FakeClock(), max_entries=10_000)
    attempts = [
        (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", f"CP-{n:06d}" + "x" * 200)
        for n in range(100_000)
    ]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]

    for address, charge_point_id in attempts:
        limiter.fail(address, charge_point_id)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    assert len(limiter.pairs) <= 10_000 and len(limiter.addresses) <= 10_000
    assert grown < 8 * 1024 * 1024  # 10k pairs + 10k addresses, long ids cut short
