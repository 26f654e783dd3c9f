"""The cell physics of cell-model.md, checked on the model itself (no devices, no RunEngine)."""

import math

import numpy as np
import pytest

from devices.sim.cell import BOLTZMANN_EV, CellParameters, SimCell

AREA = CellParameters().electrode_area
MA_CM2 = 10.0  # A/m^2 per mA/cm^2
HOUR = 3600.0


def make_cell(temperature=303.15, pressure=5e6, seed=1, **params) -> SimCell:
    return SimCell(CellParameters(**params), lambda t: temperature, lambda t: pressure, np.random.default_rng(seed), 0.0)


def plate(cell: SimCell, density_ma_cm2: float, seconds: float, step: float = 1.0) -> np.ndarray:
    """Plate on the WE (negative current) for ``seconds``; return the voltage samples."""
    times = cell.state.time + np.arange(step, seconds + step / 2, step)
    return cell.galvanostatic(times, -density_ma_cm2 * MA_CM2 * AREA)


def test_bulk_conductivity_is_arrhenius_with_its_activation_energy():
    temperatures = np.array([273.15, 303.15, 333.15, 373.15])
    resistances = [make_cell(temperature=t).resistances()["bulk"] for t in temperatures]
    slope = np.polyfit(1 / temperatures, np.log(resistances), 1)[0]
    assert slope * BOLTZMANN_EV == pytest.approx(0.40, rel=1e-6)


def test_bulk_resistance_matches_geometry_and_bruggeman_density():
    cell = make_cell(temperature=298.15, relative_density=0.96)
    expected = 1.2e-3 / (0.1 * 0.96**1.5 * AREA)
    assert cell.resistances()["bulk"] == pytest.approx(expected)


def test_bulk_arc_is_only_partly_inside_a_7_mhz_sweep():
    cell = make_cell(surface="lithiophilic")
    z = cell.impedance(np.array([7e6]), noisy=False)[0]
    r_bulk = cell.resistances()["bulk"]
    assert 0.1 * r_bulk < z.real - cell.params.lead_resistance < 0.9 * r_bulk


def test_lithiophobic_interface_falls_from_2000_to_500_ohm_cm2_early_in_plating():
    cell = make_cell()
    initial = cell.resistances()["interface"] * AREA * 1e4
    plate(cell, 0.5, 0.06 / 0.5 * HOUR)  # 0.06 mAh/cm^2
    after = cell.resistances()["interface"] * AREA * 1e4
    assert initial == pytest.approx(2000, rel=0.01)
    assert after == pytest.approx(500, rel=0.05)


def test_interface_resistance_falls_with_pressure_as_inverse_square_root():
    low, high = make_cell(pressure=2.5e6), make_cell(pressure=10e6)
    ratio = low.resistances()["interface"] / high.resistances()["interface"]
    assert ratio == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("density", [0.5, 2.5])
def test_lithiophilic_cell_plates_1_mah_stably_below_the_critical_local_current(density, seed):
    """The study: lithiophilic cells plated 1 mAh/cm^2 at 0.5 and 2.5 mA/cm^2 keep a stable voltage
    (the stripping counter electrode voids a little above 0.75 mA/cm^2 at 5 MPa, a few per cent)."""
    cell = make_cell(surface="lithiophilic", seed=seed)
    voltage = np.abs(plate(cell, density, 1.0 / density * HOUR))  # 1 mAh/cm^2
    assert cell.state.depth_we == 0.0 and cell.state.short_time is None
    settled = voltage[60:]
    assert settled.max() / settled.min() < 1.1


def test_lithiophilic_cell_at_5_ma_shows_soft_shorts_within_1_mah_and_may_not_short():
    unstable, shorted = 0, 0
    for seed in range(8):
        cell = make_cell(surface="lithiophilic", seed=seed)
        voltage = np.abs(plate(cell, 5.0, 0.2 * HOUR))  # 1 mAh/cm^2
        shorted += cell.state.short_time is not None
        unstable += voltage.min() < 0.7 * np.median(voltage)  # a soft short's dip
    assert unstable >= 5 and shorted <= 4


def test_time_to_short_scatters_between_seeds_like_real_cells():
    """A lithiophobic cell at 0.5 mA/cm^2: the pore population and growth increments are drawn from
    the seed, so the time to short has a coefficient of variation of 10-30 % (cell-model.md)."""
    times = []
    for seed in range(10):
        cell = make_cell(seed=seed)
        while cell.state.short_time is None:
            plate(cell, 0.5, 900, step=900.0)
        times.append(cell.state.short_time)
    cv = np.std(times, ddof=1) / np.mean(times)
    assert 0.08 < cv < 0.35, f"coefficient of variation {cv:.2f}"
    assert 2 * HOUR < np.mean(times) < 6 * HOUR


def test_the_cell_s_fate_does_not_depend_on_how_often_it_is_sampled():
    """The physics draws per step of a fixed grid, so sampling every second or every 7 minutes (as a
    poll might) gives the same short and the same soft shorts."""
    often, rarely = make_cell(seed=5), make_cell(seed=5)
    plate(often, 0.5, 6 * HOUR, step=1.0)
    plate(rarely, 0.5, 6 * HOUR, step=420.0)
    assert often.state.short_time == pytest.approx(rarely.state.short_time, abs=1e-6)
    assert len(often.state.soft_shorts) > 10
    assert np.allclose(np.array(often.state.soft_shorts), np.array(rarely.state.soft_shorts), rtol=0, atol=1e-6)


def test_lithiophobic_cell_at_half_ma_shorts_after_bulk_resistance_falls():
    cell = make_cell()
    bulk = []
    while cell.state.short_time is None and cell.state.time < 24 * HOUR:
        bulk.append(cell.resistances()["bulk"])
        plate(cell, 0.5, 900, step=10.0)
    assert cell.state.short_time is not None, "a lithiophobic cell at 0.5 mA/cm^2 must short within a day"
    assert np.all(np.diff(bulk) <= 0) and bulk[-1] < 0.5 * bulk[0]
    low_frequency = cell.impedance(np.array([0.5]), noisy=False)[0]
    assert 300 < abs(low_frequency) < 700, "a shorted cell measures a few hundred ohm"
    voltage = plate(cell, 0.5, 60)
    assert np.all(np.abs(voltage) < 0.015), "the voltage collapses to I x R_short"


def test_soft_shorts_precede_the_short():
    cell = make_cell(seed=4)
    while cell.state.short_time is None:
        plate(cell, 0.5, 900, step=10.0)
    assert any(start < cell.state.short_time for start, _, _ in cell.state.soft_shorts)


def test_denser_pellets_and_higher_pressure_raise_the_critical_current():
    base = make_cell()
    dense = make_cell(relative_density=0.99)
    squeezed = make_cell(pressure=10e6)
    critical = base.critical_current_density(5e6)
    assert dense.critical_current_density(5e6) > critical
    assert squeezed.critical_current_density(10e6) > critical
    assert base.critical_current_density(0.0) > 0, "without stack pressure cells still have a finite limit"


def test_cell_without_stack_pressure_still_fails_by_dendrites():
    """Pressure builds inside the pores even with the rig off (the study's Fig. S12)."""
    cell = make_cell(pressure=0.0)
    while cell.state.short_time is None and cell.state.time < 24 * HOUR:
        plate(cell, 0.5, 900, step=10.0)
    assert cell.state.short_time is not None
    assert cell.state.contact_ce > 0.9, "it shorted with its counter electrode still in contact"


def test_cell_without_stack_pressure_keeps_contact_for_hours():
    """Stripping without pressure voids the counter electrode slowly: the voltage creeps up over
    hours, it does not run away in a minute."""
    cell = make_cell(pressure=0.0, surface="lithiophilic")
    voltage = np.abs(plate(cell, 0.5, 4 * HOUR, step=10.0))
    assert cell.state.short_time is None
    assert voltage[360] / voltage[6] < 1.3 and voltage[-1] / voltage[6] < 2.0  # after 1 h and 4 h
    assert np.all(np.diff(voltage[6::60]) > 0), "and it does rise: the counter electrode is voiding"


def test_fast_stripping_voids_the_counter_electrode_and_the_next_plating_shorts():
    cell = make_cell(surface="lithiophilic")
    plate(cell, 2.5, 1.2 * HOUR, step=10.0)  # 3 mAh/cm^2; the CE strips above its critical current
    assert cell.state.contact_ce < 0.2 and cell.state.short_time is None
    times = cell.state.time + np.arange(10.0, 2 * HOUR, 10.0)
    cell.galvanostatic(times, +2.5 * MA_CM2 * AREA)  # reverse: now the voided CE plates
    assert cell.state.short_time is not None


def test_blocking_cell_dc_step_decays_to_the_electronic_current():
    cell = make_cell(kind="blocking")
    times = np.array([1.0, 10.0, 600.0, 4 * HOUR])
    current = cell.potentiostatic(times, 1.0)
    electronic = 1.0 / cell.resistances()["electronic"]
    assert cell.resistances()["electronic"] == pytest.approx(3.8e8, rel=0.01)
    assert current[0] > 5 * electronic
    assert np.all(np.diff(current) < 0)
    assert current[-1] == pytest.approx(electronic, rel=0.05)


def test_blocking_cell_spectrum_ends_in_a_capacitive_spur():
    cell = make_cell(kind="blocking")
    z = cell.impedance(np.array([1.0, 0.1]), noisy=False)
    assert -z.imag[1] > 5 * -z.imag[0] > 0


def test_tracer_working_electrode_adds_a_few_millivolts():
    cell = make_cell(kind="tracer", voltage_noise=0.0)
    assert cell.rest(np.arange(1.0, 11.0)) == pytest.approx(np.full(10, 3e-3))


def test_impedance_noise_is_about_half_a_percent():
    cell = make_cell(seed=2)
    frequencies = np.logspace(6, 0, 4000)
    true, measured = cell.impedance(frequencies, noisy=False), cell.impedance(frequencies)
    relative = np.abs(measured - true) / np.abs(true)
    assert 0.003 < np.sqrt(np.mean(relative**2)) < 0.008


def test_same_seed_same_measurements():
    a, b = make_cell(seed=7), make_cell(seed=7)
    assert np.array_equal(plate(a, 0.5, 3 * HOUR, step=10.0), plate(b, 0.5, 3 * HOUR, step=10.0))


@pytest.mark.parametrize("temperature", [303.15, 333.15])
def test_voltage_under_current_is_ohmic_with_the_model_resistances(temperature):
    cell = make_cell(temperature=temperature, surface="lithiophilic", voltage_noise=0.0)
    current = -0.5 * MA_CM2 * AREA
    voltage = cell.galvanostatic(np.array([60.0]), current)[0]
    r = cell.resistances()
    expected = current / (1 / (r["bulk"] + r["interface"] + cell.params.lead_resistance) + 1 / r["electronic"])
    assert voltage == pytest.approx(expected, rel=1e-3)
    assert not math.isnan(voltage)
