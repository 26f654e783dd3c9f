"""The simulated chamber: first-order lag behind a ramp-limited setpoint, noise, rated range."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from devices.sim.chamber import ChamberParameters, SimChamber
from labctl.core.clock import VirtualClock

START = 1.7e9  # a plausible epoch time, so float resolution is as in real runs
TAU = 480.0


def make_chamber(**overrides):
    clock = VirtualClock(start=START)
    return clock, SimChamber(clock, ChamberParameters(**overrides), rng=np.random.default_rng(7))


def test_defaults_come_from_the_cell_model():
    p = ChamberParameters()
    assert (p.time_constant, p.max_ramp_rate, p.noise) == (480.0, 0.05, 0.05)
    assert p.rated_range == (233.15, 473.15)
    assert p.initial_temperature == 298.15


def test_parameters_are_frozen_and_strict():
    with pytest.raises(ValidationError):
        ChamberParameters(time_konstant=1.0)
    with pytest.raises(ValidationError):
        ChamberParameters().time_constant = 1.0
    with pytest.raises(ValidationError):
        ChamberParameters(rated_range=(400.0, 300.0))


def test_starts_settled_at_the_initial_temperature():
    clock, chamber = make_chamber()
    clock.advance(3600)
    assert chamber.setpoint == 298.15
    assert chamber.temperature() == pytest.approx(298.15)


def test_working_setpoint_ramps_at_3_k_per_min():
    clock, chamber = make_chamber()
    chamber.set_setpoint(398.15)
    clock.advance(60)
    assert chamber.working_setpoint() == pytest.approx(298.15 + 3.0)
    clock.advance(1940)  # 2000 s at 0.05 K/s covers the 100 K
    assert chamber.working_setpoint() == 398.15


def test_temperature_never_rises_faster_than_the_ramp():
    clock, chamber = make_chamber()
    chamber.set_setpoint(443.15)
    times = START + np.arange(0.0, 6 * 3600, 10.0)
    temperatures = np.array([chamber.temperature(t) for t in times])
    assert np.all(np.diff(temperatures) >= 0)
    assert np.max(np.diff(temperatures) / 10.0) <= 0.05 + 1e-12
    assert temperatures[-1] == pytest.approx(443.15, abs=1e-3)


def test_one_time_constant_after_the_ramp_covers_63_percent():
    clock, chamber = make_chamber()
    chamber.set_setpoint(308.15)
    ramp_end = START + 10.0 / 0.05
    at_ramp_end = chamber.temperature(ramp_end)
    assert chamber.working_setpoint(ramp_end) == 308.15
    fraction = (chamber.temperature(ramp_end + TAU) - at_ramp_end) / (308.15 - at_ramp_end)
    assert fraction == pytest.approx(1 - math.exp(-1), rel=1e-9)


def test_ramp_response_matches_a_fine_euler_integration():
    clock, chamber = make_chamber()
    chamber.set_setpoint(323.15)
    dt, temperature, working = 0.01, 298.15, 298.15
    for _ in range(int(1000 / dt)):
        temperature += (working - temperature) / TAU * dt
        working = min(working + 0.05 * dt, 323.15)
    assert chamber.temperature(START + 1000) == pytest.approx(temperature, abs=1e-3)


def test_cooling_ramps_down():
    clock, chamber = make_chamber(initial_temperature=353.15)
    chamber.set_setpoint(293.15)
    clock.advance(600)
    assert chamber.working_setpoint() == pytest.approx(353.15 - 30.0)
    clock.advance(6 * 3600)
    assert chamber.temperature() == pytest.approx(293.15, abs=1e-3)


def test_setpoint_change_mid_ramp_takes_effect_from_then():
    clock, chamber = make_chamber()
    chamber.set_setpoint(398.15)
    clock.advance(100)  # working setpoint now 303.15
    chamber.set_setpoint(298.15)
    clock.advance(40)
    assert chamber.working_setpoint() == pytest.approx(303.15 - 2.0)


def test_reading_noise_is_about_0_05_k():
    clock, chamber = make_chamber()
    readings = []
    for _ in range(4000):  # a millisecond apart: the noise is drawn per reading time
        clock.advance(1e-3)
        readings.append(chamber.read_temperature())
    assert np.mean(readings) == pytest.approx(298.15, abs=0.005)
    assert np.std(readings) == pytest.approx(0.05, rel=0.05)


def test_a_retried_read_sees_the_same_reading():
    """A read repeated at the same session time (a link timeout under load) returns what the first
    did, so a retry cannot change the run's data."""
    clock, chamber = make_chamber()
    clock.advance(5.0)
    assert chamber.read_temperature() == chamber.read_temperature()


def test_seeded_readings_are_reproducible():
    first = [make_chamber()[1].read_temperature() for _ in range(3)]
    assert first[0] == first[1] == first[2]


@pytest.mark.parametrize("kelvin", [473.16, 233.14, 600.0, 0.0])
def test_setpoints_outside_the_rated_range_are_refused_in_celsius(kelvin):
    clock, chamber = make_chamber()
    with pytest.raises(ValueError, match=r"-40\.00 to 200\.00 degC"):
        chamber.set_setpoint(kelvin)
    assert chamber.setpoint == 298.15


def test_lithium_melting_point_is_not_the_chamber_s_business():
    clock, chamber = make_chamber()
    chamber.set_setpoint(463.15)  # above 180.5 degC: the config layer refuses it, not the chamber
    assert chamber.setpoint == 463.15


def test_querying_the_past_is_an_error():
    clock, chamber = make_chamber()
    clock.advance(100)
    chamber.temperature()
    assert chamber.temperature(START + 100) == chamber.temperature()  # the same time is fine
    with pytest.raises(ValueError, match="earlier"):
        chamber.temperature(START + 50)


def test_a_day_costs_a_handful_of_exact_segments():
    clock, chamber = make_chamber()
    for setpoint in (303.15, 443.15, 303.15, 253.15):
        chamber.set_setpoint(setpoint)
        clock.advance(6 * 3600)
    chamber.temperature()
    # Exact solutions: one segment for each ramp and one for each plateau, however long.
    assert chamber.step_count <= 8
    assert chamber.temperature() == pytest.approx(253.15, abs=1e-3)
