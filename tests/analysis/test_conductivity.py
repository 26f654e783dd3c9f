"""Conductivities, Arrhenius fits and critical current densities from synthetic and simulated data."""

import numpy as np
import pytest

from devices.sim.cell import BOLTZMANN_EV, CellParameters, SimCell
from labctl.core.analysis import (
    BLOCKING, arrhenius_fit, critical_current_density, electronic_conductivity, fit_spectrum, ionic_conductivity,
    steady_current,
)

PARAMS = CellParameters(kind="blocking")


def blocking_cell(temperature: float, seed: int = 0) -> SimCell:
    return SimCell(PARAMS, lambda t: temperature, lambda t: 5e6, np.random.default_rng(seed), 0.0)


def test_ionic_conductivity_from_resistance_and_geometry():
    # 1.2 mm and 2 mm diameter at 1 mS/cm (0.1 S/m): R = L / (sigma A) = 3820 ohm.
    r_bulk = 1.2e-3 / (0.1 * np.pi * 1e-6)
    assert ionic_conductivity(r_bulk, 1.2e-3, np.pi * 1e-6) == pytest.approx(0.1)


@pytest.mark.parametrize("with_temperature", [False, True])
def test_arrhenius_fit_recovers_the_activation_energy(with_temperature):
    t = np.linspace(253.15, 353.15, 6)
    law = np.exp(-0.40 / (BOLTZMANN_EV * t)) * 1e6
    sigma = law / t if with_temperature else law
    noisy = sigma * (1 + 0.01 * np.random.default_rng(0).normal(size=t.size))
    fit = arrhenius_fit(t, noisy, with_temperature=with_temperature)
    assert 0 < fit.activation_energy_err < 0.01
    assert abs(fit.activation_energy - 0.40) < 3 * fit.activation_energy_err
    assert fit.conductivity(t) == pytest.approx(sigma, rel=0.03)


def test_arrhenius_fit_needs_three_temperatures():
    with pytest.raises(ValueError, match="three or more"):
        arrhenius_fit([300, 320], [0.1, 0.2])


def test_activation_energy_of_the_simulated_cell_from_its_spectra(frequencies):
    """Bulk resistances fitted from blocking-cell spectra at -20 to 40 degC give the 0.40 eV put in."""
    temperatures = np.array([253.15, 268.15, 283.15, 298.15, 313.15])
    sigma = []
    for k, temperature in enumerate(temperatures):
        z = blocking_cell(temperature, seed=k).impedance(frequencies)
        r_bulk = fit_spectrum(frequencies, z, BLOCKING).value("bulk")
        sigma.append(ionic_conductivity(r_bulk, PARAMS.thickness, PARAMS.electrode_area))
    fit = arrhenius_fit(temperatures, sigma)
    assert fit.activation_energy == pytest.approx(PARAMS.bulk_activation_energy, abs=0.01)
    dense = PARAMS.bulk_conductivity_25c * PARAMS.relative_density**1.5  # Bruggeman
    assert fit.conductivity(298.15) == pytest.approx(dense, rel=0.02)


def test_electronic_conductivity_from_the_dc_step_of_a_blocking_cell():
    cell = blocking_cell(303.15)
    times = np.arange(1.0, 3601.0)
    currents = cell.potentiostatic(times, 0.1)
    current = steady_current(times, currents)
    sigma_e = electronic_conductivity(0.1, current, PARAMS.thickness, PARAMS.electrode_area)
    assert sigma_e == pytest.approx(PARAMS.electronic_conductivity, rel=0.02)
    assert currents[0] > 5 * current  # after 1 s the ionic tail still dominates; by the end it has gone


def staircase(fail_step: int | None, steps=(1.0, 2.0, 3.0, 4.0, 5.0), hold=300, asr=0.05, seed=0):
    """Current-density steps (A/m^2) held ``hold`` s at ``asr`` ohm m^2; the cell shorts halfway
    through step ``fail_step`` to 480 ohm on 2 mm electrodes."""
    rng = np.random.default_rng(seed)
    t = np.arange(len(steps) * hold, dtype=float)
    j = np.repeat(steps, hold)
    v = j * asr + rng.normal(0, 2e-4, t.size)
    if fail_step is not None:
        short_at = fail_step * hold + hold // 2
        v[short_at:] = j[short_at:] * np.pi * 1e-6 * 480 + rng.normal(0, 2e-4, t.size - short_at)
    return t, j, v


def test_critical_current_density_is_the_step_that_shorts():
    t, j, v = staircase(fail_step=3)
    result = critical_current_density(t, j, v)
    assert result.density == 4.0
    assert result.last_stable == 3.0
    assert result.time == 3 * 300 + 150


def test_staircase_that_holds_has_no_critical_current():
    t, j, v = staircase(fail_step=None)
    result = critical_current_density(t, j, v)
    assert result.density is None and result.time is None
    assert result.last_stable == 5.0
