"""Metering: energy = last valid register − start; refused values never count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from station.domain import metering
from station.domain.events import ENERGY_REGISTER, MeterReading, SampledValue
from station.domain.metering import MeterState, sampled_value

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def reading(seconds: int, *values: SampledValue) -> MeterReading:
    return MeterReading(T0 + timedelta(seconds=seconds), values)


def register(wh: int | str, phase: str | None = None, unit: str = "Wh") -> SampledValue:
    return sampled_value(wh, measurand=ENERGY_REGISTER, unit=unit, phase=phase)


def test_kwh_and_wh_are_normalised_to_wh() -> None:
    assert register("1.5", unit="kWh").value == Decimal("1500.0")
    assert register(1500).value == Decimal(1500)
    assert sampled_value("7.2", measurand="Power.Active.Import", unit="kW").value == Decimal(
        "7200.0"
    )


def test_a_value_without_measurand_or_unit_is_the_energy_register_in_wh() -> None:
    value = sampled_value("42")

    assert (value.measurand, value.value, value.unit) == (ENERGY_REGISTER, Decimal(42), "Wh")


def test_the_phaseless_total_wins_over_phases_and_phases_sum_without_it() -> None:
    with_total = reading(0, register(100, "L1"), register(300), register(100, "L2"))
    phases_only = reading(0, register(100, "L1"), register(110, "L2"), register(120, "L3"))
    two_phases = reading(0, register(100, "L1"), register(110, "L2"))

    assert metering.register_of(with_total)[0] == Decimal(300)
    assert metering.register_of(phases_only)[0] == Decimal(330)
    assert metering.register_of(two_phases)[0] is None


def test_energy_is_last_register_minus_meter_start() -> None:
    state = metering.start(Decimal(1000))

    result = metering.apply(state, [reading(60, register(1500)), reading(120, register(2500))])

    assert result.state.energy_wh == Decimal(1500)
    assert result.anomalies == ()


def test_a_backwards_reading_is_an_anomaly_and_changes_nothing() -> None:
    state = metering.apply(metering.start(Decimal(0)), [reading(60, register(500))]).state

    result = metering.apply(state, [reading(120, register(400))])

    assert result.state == state
    assert [a.kind for a in result.anomalies] == ["backwards"]


def test_a_begin_reading_repeated_after_later_ones_is_skipped_without_an_anomaly() -> None:
    state = metering.apply(metering.start(Decimal(1000)), [reading(600, register(2000))]).state
    begin = sampled_value(1000, measurand=ENERGY_REGISTER, context="Transaction.Begin")
    end = sampled_value(4000, measurand=ENERGY_REGISTER, context="Transaction.End")

    result = metering.apply(state, [reading(0, begin), reading(1800, end)])
    periodic_again = metering.apply(state, [reading(0, register(1000))])

    assert result.anomalies == ()
    assert result.state.energy_wh == Decimal(3000)
    assert [a.kind for a in periodic_again.anomalies] == ["out_of_order"]


def test_a_duplicate_reading_and_a_duplicate_seq_no_are_anomalies() -> None:
    state = metering.apply(metering.start(Decimal(0)), [reading(60, register(500))], seq_no=1).state

    same_reading = metering.apply(state, [reading(60, register(500))], seq_no=2)
    same_seq_no = metering.apply(state, [reading(120, register(900))], seq_no=1)

    assert [a.kind for a in same_reading.anomalies] == ["duplicate"]
    assert same_reading.state.energy_wh == Decimal(500)
    assert [a.kind for a in same_seq_no.anomalies] == ["duplicate_seq_no"]
    assert same_seq_no.state == state


def test_a_non_numeric_value_is_an_anomaly_and_keeps_what_was_sent() -> None:
    value = register("twelve")

    result = metering.apply(metering.start(Decimal(0)), [reading(60, value)])

    assert value.value is None and value.raw == "twelve"
    assert register("1e30").value is None
    assert [a.kind for a in result.anomalies] == ["non_numeric"]
    assert result.state.energy_wh == 0


def test_without_meter_start_the_first_register_is_the_start() -> None:
    result = metering.apply(MeterState(), [reading(0, register(7000)), reading(60, register(7600))])

    assert result.state.start_wh == Decimal(7000)
    assert result.state.energy_wh == Decimal(600)


def test_readings_within_one_message_apply_in_time_order() -> None:
    late_first = [reading(120, register(300)), reading(60, register(200))]

    result = metering.apply(metering.start(Decimal(100)), late_first)

    assert result.state.energy_wh == Decimal(200)
    assert result.anomalies == ()


def test_a_meter_stop_below_the_last_register_is_refused() -> None:
    state = metering.apply(metering.start(Decimal(0)), [reading(60, register(900))]).state

    low = metering.stop(state, Decimal(800), T0 + timedelta(seconds=120))
    high = metering.stop(state, Decimal(1000), T0 + timedelta(seconds=120))

    assert low.state.energy_wh == Decimal(900) and low.anomalies[0].kind == "backwards"
    assert high.state.energy_wh == Decimal(1000) and high.anomalies == ()


def test_power_is_the_average_over_the_last_interval() -> None:
    readings = [reading(0, register(0)), reading(60, register(100))]

    state = metering.apply(MeterState(), readings).state

    assert state.power_w == Decimal("6000.000")


registers = st.one_of(
    st.integers(min_value=0, max_value=10**9).map(str),
    st.sampled_from(["nan", "", "abc", "1e3", "-5"]),
)
messages = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=10_000),  # seconds
        registers,
        st.one_of(st.none(), st.integers(min_value=0, max_value=50)),  # seq_no
    ),
    max_size=40,
)


@given(start=st.integers(min_value=0, max_value=10**6), messages=messages)
def test_energy_never_decreases_and_equals_last_valid_register_minus_start(
    start: int, messages: list[tuple[int, str, int | None]]
) -> None:
    state = metering.start(Decimal(start))
    previous = state.energy_wh
    for seconds, value, seq_no in messages:
        state = metering.apply(state, [reading(seconds, register(value))], seq_no=seq_no).state
        assert state.energy_wh >= previous
        previous = state.energy_wh

    assert state.energy_wh == max((state.last_wh or Decimal(start)) - Decimal(start), 0)
    assert state.last_wh is None or state.last_wh >= start or state.energy_wh == 0


@given(values=st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=30))
def test_monotonic_registers_all_count_and_give_last_minus_first(values: list[int]) -> None:
    ordered = sorted(values)
    readings = [reading(i * 60, register(v)) for i, v in enumerate(ordered)]

    result = metering.apply(MeterState(), readings)

    assert result.state.energy_wh == Decimal(ordered[-1] - ordered[0])
    assert all(a.kind != "backwards" for a in result.anomalies)
