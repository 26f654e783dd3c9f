"""Chamber and rig devices against their simulators, on the virtual clock."""

import numpy as np
import pytest
from bluesky.utils import FailedStatus

from devices.chamber.device import TemperatureChamber
from devices.errors import InstrumentLost
from devices.rig.device import StackPressureRig
from devices.sim.chamber import SimChamber
from devices.sim.rig import SimRig
from labctl.core.clock import VirtualClock


@pytest.fixture
def clock():
    return VirtualClock(start=0.0)


@pytest.fixture
def chamber(clock):
    sim = SimChamber(clock, rng=np.random.default_rng(0))
    return TemperatureChamber(backend=sim, clock=clock, band=0.5, hold=300.0, name="chamber")


@pytest.fixture
def rig(clock):
    sim = SimRig(clock, lambda t: 303.15, rng=np.random.default_rng(0))
    return StackPressureRig(backend=sim, clock=clock, pressure_range=(0, 20e6), band=0.1e6, name="rig")


def advance_until_done(clock, status, step=5.0, limit=24 * 3600):
    while not status.done and clock.now() < limit:
        clock.advance(step)
    return clock.now()


def test_chamber_set_finishes_once_stable_for_the_hold_time(clock, chamber):
    status = chamber.set(303.15)
    finished = advance_until_done(clock, status)
    assert status.success
    assert abs(chamber.backend.temperature() - 303.15) < 0.5
    assert finished > 300, "the hold time must pass inside the band before the status finishes"
    reading = chamber.read()
    assert reading["chamber_temperature"]["value"] == pytest.approx(303.15, abs=0.5)
    assert reading["chamber_temperature"]["timestamp"] == clock.now()
    assert chamber.describe()["chamber_temperature"]["units"] == "K"


def test_chamber_refuses_a_setpoint_outside_its_range_before_sending_it(clock):
    sim = SimChamber(clock)
    chamber = TemperatureChamber(backend=sim, clock=clock, temperature_range=(233.15, 373.15), name="chamber")
    with pytest.raises(ValueError, match="outside the chamber's range"):
        chamber.set(400.0)
    assert sim.setpoint == sim.params.initial_temperature


def test_chamber_set_times_out_with_a_reason(clock):
    sim = SimChamber(clock)
    chamber = TemperatureChamber(backend=sim, clock=clock, timeout=600.0, name="chamber")
    status = chamber.set(433.15)  # 135 K away: cannot be stable within 10 min
    advance_until_done(clock, status)
    assert status.done and not status.success
    assert "not reached within 600 s" in str(status.exception())


def test_rig_set_reaches_and_holds_the_target(clock, rig):
    status = rig.set(5e6)
    advance_until_done(clock, status)
    assert status.success
    clock.advance(5 * 3600)
    assert rig.pressure.get() == pytest.approx(5e6, abs=0.1e6)
    assert rig.force.get() == pytest.approx(5e6 * rig.area.get(), rel=0.03)


def test_rig_set_zero_releases(clock, rig):
    advance_until_done(clock, rig.set(5e6))
    status = rig.set(0.0)
    advance_until_done(clock, status)
    assert status.success and rig.backend.pressure() < 0.05e6


def test_rig_refuses_pressure_past_its_range(rig):
    with pytest.raises(ValueError, match="outside the rig's range"):
        rig.set(25e6)
    assert rig.backend.target == 0.0


def test_a_set_status_fails_with_the_error_of_an_instrument_that_stops_answering(clock, chamber):
    """The stability check runs on the clock, not in the plan: its error must reach the plan and its reason."""
    lost = InstrumentLost("chamber", "tcp://10.0.0.5:502", "no valid reply to the read of register 32770")

    def unanswered():
        raise lost

    status = chamber.set(303.15)
    clock.advance(60.0)
    chamber.backend.read_temperature = unanswered
    clock.advance(5.0)
    assert status.done and not status.success and status.exception() is lost
    # bluesky records str(FailedStatus(status)) as the stop reason of a run that waited on it.
    assert str(FailedStatus(status)) == "chamber at tcp://10.0.0.5:502: no valid reply to the read of register 32770"
