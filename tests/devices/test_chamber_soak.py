"""TemperatureChamber's soak and lithium melting-point interlock, in process and through the Modbus wire
simulator; and what heating a held cell to 170 degC and back does to its stack pressure."""

from pathlib import Path

import numpy as np
import pytest

from devices.chamber.device import TemperatureChamber
from devices.sim.cell import CellParameters
from devices.sim.chamber import SimChamber
from devices.sim.wire import ModbusChamberServer
from labctl.core.clock import VirtualClock
from labctl.config import load_lab
from labctl.core.errors import LITHIUM_MELTING_POINT, LithiumWouldMelt
from labctl.lab import build_simulated_lab

LAB_FILE = Path(__file__).resolve().parents[2] / "configs" / "lab-sim.yaml"  # eurotherm-3200 and mark10-rig
C30, C170 = 303.15, 443.15
HOLD = 300.0


def chamber_on_sim(seed=0, **options):
    clock = VirtualClock(start=0.0)
    sim = SimChamber(clock, rng=np.random.default_rng(seed))
    return clock, sim, TemperatureChamber(backend=sim, clock=clock, band=0.5, hold=HOLD, name="chamber", **options)


def advance_until_done(clock, status, step=5.0, limit=48 * 3600):
    while not status.done and clock.now() < limit:
        clock.advance(step)
    return clock.now()


@pytest.fixture
def wired_lab(tmp_path):
    """The simulated lab of configs/lab-sim.yaml: the chamber behind a Eurotherm 3200 on Modbus TCP."""
    config = load_lab(LAB_FILE)
    assert config.instruments.chamber.kind == "eurotherm-3200"
    lab = build_simulated_lab(config, CellParameters(), tmp_path, VirtualClock(start=0.0))
    yield lab
    lab.close()


def test_a_soak_ends_its_duration_after_the_chamber_is_stable():
    clock, _, chamber = chamber_on_sim()
    stable = advance_until_done(clock, chamber.set(C30))
    clock, _, chamber = chamber_on_sim()  # the same chamber again, same noise
    status = chamber.set(C30, soak=1800.0)
    soaked = advance_until_done(clock, status)
    assert status.success
    assert soaked - stable == pytest.approx(1800.0, abs=chamber.poll)


def test_a_soak_starts_again_when_the_chamber_leaves_the_band():
    clock, sim, chamber = chamber_on_sim()
    status = chamber.set(C30, soak=3600.0)
    clock.advance(40 * 60)  # stable and well into the soak
    sim.set_setpoint(C30 + 5.0)  # someone turns the controller's knob, then back
    clock.advance(10 * 60)
    assert not status.done
    sim.set_setpoint(C30)
    back = clock.now()
    finished = advance_until_done(clock, status)
    assert status.success
    assert finished - back > HOLD + 3600.0, "the soak is counted again from the new stable moment"


def test_the_soak_is_named_when_it_times_out():
    clock, sim, chamber = chamber_on_sim(timeout=3600.0)
    status = chamber.set(C30, soak=600.0)
    clock.advance(30 * 60)
    sim.set_setpoint(C30 + 5.0)  # never back: the soak cannot complete
    advance_until_done(clock, status)
    assert status.done and not status.success
    assert "then a 600 s soak not reached within 4200 s" in str(status.exception())


def test_a_negative_soak_is_refused_before_the_setpoint_is_sent():
    clock, sim, chamber = chamber_on_sim()
    with pytest.raises(ValueError, match="soak cannot be negative"):
        chamber.set(C30, soak=-1.0)
    assert sim.setpoint == sim.params.initial_temperature


@pytest.mark.parametrize("kelvin", [LITHIUM_MELTING_POINT, LITHIUM_MELTING_POINT + 5.0])
def test_the_interlock_refuses_lithium_s_melting_point_and_above(kelvin):
    clock, sim, chamber = chamber_on_sim()
    assert chamber.contains_lithium.get(), "armed unless told the cell has no lithium"
    with pytest.raises(LithiumWouldMelt, match=r"would melt the cell's lithium \(Li melts at 180.5 degC\)"):
        chamber.set(kelvin)
    assert sim.setpoint == sim.params.initial_temperature


def test_the_interlock_allows_just_below_the_melting_point_and_any_temperature_without_lithium():
    clock, sim, chamber = chamber_on_sim()
    chamber.set(LITHIUM_MELTING_POINT - 0.1)
    assert sim.setpoint == LITHIUM_MELTING_POINT - 0.1
    clock, sim, chamber = chamber_on_sim(contains_lithium=False)  # a Ni|LLZTO|Ni blocking cell
    chamber.set(463.15)
    assert sim.setpoint == 463.15
    assert chamber.read_configuration()["chamber_contains_lithium"]["value"] is False


def test_over_modbus_the_interlock_sends_nothing_to_the_controller(wired_lab):
    server = next(s for s in wired_lab.servers if isinstance(s, ModbusChamberServer))
    chamber, sim = wired_lab.chamber, wired_lab.simulators["chamber"]
    chamber.read()
    requests = server.requests
    with pytest.raises(LithiumWouldMelt):
        chamber.set(LITHIUM_MELTING_POINT)
    assert server.requests == requests, "not a single Modbus request"
    assert sim.setpoint == sim.params.initial_temperature
    chamber.contains_lithium.put(False)  # the same setpoint on a cell without lithium goes to the controller
    chamber.set(LITHIUM_MELTING_POINT)
    assert server.requests > requests
    assert sim.setpoint == pytest.approx(LITHIUM_MELTING_POINT, abs=0.01)


def test_heating_a_held_cell_to_170_degC_soaking_and_back_over_the_wire(wired_lab):
    """cell-model.md: the chamber ramps at <= 3 K/min and lags by ~8 min; creep is far faster near the
    melting point and heating expands the lithium, and the rig's closed loop holds the pressure
    through both: the lab's band (0.1 MPa) around 5 MPa the whole way."""
    clock, chamber, rig = wired_lab.clock, wired_lab.chamber, wired_lab.rig
    band = wired_lab.config.instruments.rig.band
    advance_until_done(clock, rig.set(5e6))
    start = clock.now()
    readings = []

    def follow(status):
        while not status.done:
            clock.advance(60.0)
            readings.append((clock.now(), chamber.temperature.get(), rig.pressure.get()))
        return status

    hot = follow(chamber.set(C170, soak=2 * 3600.0))
    heated = clock.now()
    cold = follow(chamber.set(C30))
    t, temperature, pressure = np.array(readings).T
    assert hot.success and cold.success
    assert temperature.max() == pytest.approx(C170, abs=0.5)
    assert temperature[-1] == pytest.approx(C30, abs=0.5)
    assert np.all(np.abs(np.diff(temperature)) <= 3.0 + 0.5), "the ramp is limited to 3 K/min"
    stable_hot = t[(np.abs(temperature - C170) <= 0.5) & (t <= heated)]
    assert heated - stable_hot[0] >= wired_lab.config.instruments.chamber.stability_hold + 2 * 3600.0
    assert heated - start > (C170 - 298.15) / 3.0 * 60 + 2 * 3600.0
    assert np.max(np.abs(pressure - 5e6)) < band
