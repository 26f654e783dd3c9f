"""Equivalent-circuit fits recover known parameters from synthetic spectra with the simulator's noise."""

import numpy as np
import pytest

from labctl.core.analysis import BLOCKING, BULK_INTERFACE, SHORTED, THREE_ARCS, fit_spectrum, initial_guess

AREA = np.pi * 1e-6  # m^2, a 2 mm electrode
REPEATS = 15  # per case: enough for a median, and the suite stays quick

# R0, R1, Q1, a1, R2, Q2, a2 (ohm, F s^(a-1)). In the first three the bulk arc's apex is near
# 7 MHz, as a 1.2 mm LLZTO pellet's is at room temperature, so only part of the arc is in the sweep.
CASES = {
    "plating, bulk apex 4.6 MHz (partly in the sweep)": (BULK_INTERFACE, [5, 3100, 11.2e-12, 1.0, 16000, 1.4e-7, 0.85]),
    "lithiophobic before plating, bulk apex 3.6 MHz": (BULK_INTERFACE, [5, 4000, 11.2e-12, 1.0, 64000, 3.9e-8, 0.85]),
    "depressed arcs, bulk apex 4.4 MHz": (BULK_INTERFACE, [20, 1000, 2e-10, 0.9, 5000, 1e-6, 0.8]),
    "both arcs inside the sweep, cold cell": (BULK_INTERFACE, [10, 60000, 1.2e-11, 0.98, 120000, 5e-8, 0.85]),
    "blocking cell (Ni/LLZTO/Ni)": (BLOCKING, [5, 3100, 11.2e-12, 1.0, 1.57e-7, 0.9]),
}


def relative_errors(circuit, params, frequencies, noisy, roles, seed0=0):
    errors = []
    for seed in range(seed0, seed0 + REPEATS):
        fit = fit_spectrum(frequencies, noisy(circuit.impedance(params, frequencies), seed), circuit)
        errors.append([fit.value(role) / params[circuit.parameters.index(circuit.roles[role])] - 1 for role in roles])
    return np.abs(np.array(errors))


@pytest.mark.parametrize("case", list(CASES))
def test_fit_recovers_bulk_and_interface_within_one_percent_median(case, frequencies, noisy):
    circuit, params = CASES[case]
    roles = [role for role in ("bulk", "interface") if role in circuit.roles]
    errors = relative_errors(circuit, params, frequencies, noisy, roles)
    # nan where an alternative reading fits as well (the fit says not determined): rarely, and what
    # is reported lands near the truth
    assert np.all(np.nanmedian(errors, axis=0) < 0.01), dict(zip(roles, np.nanmedian(errors, axis=0)))
    assert np.all(np.nanmax(errors, axis=0) < 0.05)
    assert np.all(np.mean(np.isfinite(errors), axis=0) >= 0.8), np.mean(np.isfinite(errors), axis=0)


def test_fit_of_exact_data_is_exact(frequencies):
    circuit, params = CASES["plating, bulk apex 4.6 MHz (partly in the sweep)"]
    fit = fit_spectrum(frequencies, circuit.impedance(params, frequencies))
    assert fit.params == pytest.approx(params, rel=1e-5)
    assert fit.residual_rms < 1e-8


def test_uncertainties_match_the_scatter_of_fits(frequencies, noisy):
    """A small interface arc beside a large bulk arc (lithiophilic cell): the noise, not the fitter,
    limits R_int to a few per cent, and the reported uncertainty says so."""
    params = [5, 3100, 11.2e-12, 1.0, 160, 1.57e-7, 0.85]
    z_scores = []
    for seed in range(40):
        fit = fit_spectrum(frequencies, noisy(BULK_INTERFACE.impedance(params, frequencies), seed))
        z_scores.append([(fit.estimate(r) - params[i]) / fit.error(r) for r, i in (("bulk", 1), ("interface", 4))])
    median = np.median(np.abs(z_scores), axis=0)
    assert np.all((median > 0.4) & (median < 1.0)), median  # 0.67 for a normal distribution


def test_warm_start_follows_a_falling_bulk_with_fewer_evaluations(frequencies, noisy):
    previous, cold_calls, warm_calls = None, [], []
    for step, r_bulk in enumerate(np.linspace(3100, 300, 12)):
        params = [5, r_bulk, 11.2e-12, 1.0, 16000, 1.4e-7, 0.85]
        z = noisy(BULK_INTERFACE.impedance(params, frequencies), step)
        cold = fit_spectrum(frequencies, z)
        warm = fit_spectrum(frequencies, z, previous=previous or cold)
        previous = warm
        cold_calls.append(cold.evaluations)
        warm_calls.append(warm.evaluations)
        # As the bulk apex moves above 7 MHz its resistance is less certain; the fit says by how much,
        # and once that is more than the limit it reports the bulk not determined.
        assert abs(warm.estimate("bulk") - r_bulk) < 4 * warm.error("bulk")
        assert np.isnan(warm.value("bulk")) == (warm.error("bulk") > 0.02 * warm.estimate("bulk"))
        if np.isfinite(warm.value("bulk")):  # the same minimum (an undetermined one is a flat valley)
            assert warm.value("bulk") == pytest.approx(cold.estimate("bulk"), rel=1e-3)
        assert warm.value("interface") == pytest.approx(16000, rel=0.01)
    assert np.median(warm_calls) < np.median(cold_calls)


def test_warm_start_from_a_different_cell_still_finds_the_spectrum(frequencies, noisy):
    cold_cell = CASES["both arcs inside the sweep, cold cell"][1]
    far = fit_spectrum(frequencies, BULK_INTERFACE.impedance(cold_cell, frequencies))
    params = CASES["plating, bulk apex 4.6 MHz (partly in the sweep)"][1]
    fit = fit_spectrum(frequencies, noisy(BULK_INTERFACE.impedance(params, frequencies), 3), previous=far)
    assert fit.value("bulk") == pytest.approx(3100, rel=0.02)
    assert fit.value("interface") == pytest.approx(16000, rel=0.01)


def test_shorted_cell_gives_the_short_resistance(frequencies, noisy):
    """The short is a resistor across the whole cell (as in the simulator). Seen through it the cell's
    arcs are squashed, so Rs alone is determined once the cell behind it is known (its arcs fixed at
    the spectrum before the short) and R0 is bounded by the lead resistance; without those the fit
    says it is not determined rather than give a number."""
    cell = [5, 3100, 11.2e-12, 1.0, 16000, 1.4e-7, 0.85]
    before = fit_spectrum(frequencies, noisy(BULK_INTERFACE.impedance(cell, frequencies), 100))
    behind = {name: before.estimate(name) for name in ("R1", "Q1", "a1", "R2", "Q2", "a2")}
    for r_short in (50.0, 470.0, 2000.0):
        z = [noisy(SHORTED.impedance([5, r_short, *cell[1:]], frequencies), seed) for seed in range(6)]
        fits = [fit_spectrum(frequencies, zi, SHORTED, fixed=behind, lead_resistance=5.0) for zi in z]
        errors = np.array([fit.value("short") / r_short - 1 for fit in fits])
        assert np.all(np.abs(errors) < 0.05) and np.median(np.abs(errors)) < 0.01, (r_short, errors)
        alone = fit_spectrum(frequencies, z[0], SHORTED)
        assert np.isnan(alone.value("short")) or abs(alone.value("short") / r_short - 1) < 0.05


def test_shorted_circuit_is_the_simulators_physics(frequencies):
    r0, rs, cell = 5.0, 470.0, [0, 3100, 11.2e-12, 1.0, 16000, 1.4e-7, 0.85]
    z_cell = BULK_INTERFACE.impedance(cell, frequencies)
    expected = r0 + 1 / (1 / z_cell + 1 / rs)
    assert SHORTED.impedance([r0, rs, *cell[1:]], frequencies) == pytest.approx(expected, rel=1e-12)


def test_residual_says_when_the_circuit_is_wrong(frequencies, noisy):
    z = noisy(BULK_INTERFACE.impedance(CASES["plating, bulk apex 4.6 MHz (partly in the sweep)"][1], frequencies), 1)
    right, wrong = fit_spectrum(frequencies, z), fit_spectrum(frequencies, z, BLOCKING)
    assert right.success and right.residual_rms < 0.005  # the noise: 0.5 % of |Z| over two components
    assert not wrong.success and "noise" in wrong.reason
    assert np.isnan(wrong.value("bulk"))  # a failed fit determines nothing


def test_summary_gives_ohm_and_ohm_cm2():
    params = [5, 3100, 11.2e-12, 1.0, 500 / (AREA * 1e4), 1.4e-7, 0.85]  # 500 ohm cm^2 of interface
    frequencies = np.logspace(7, -1, 81)
    summary = fit_spectrum(frequencies, BULK_INTERFACE.impedance(params, frequencies)).summary(area=AREA)
    assert summary["r_interface"] == pytest.approx(params[4], rel=1e-6)
    assert summary["asr_interface"] == pytest.approx(500, rel=1e-6)
    assert summary["r_bulk"] == pytest.approx(3100, rel=1e-6)
    assert {"R0", "R0_err", "a2", "asr_bulk_err", "residual_rms"} <= set(summary)


@pytest.mark.parametrize("circuit", [BULK_INTERFACE, BLOCKING, SHORTED, THREE_ARCS], ids=lambda c: c.name)
def test_analytic_derivatives_match_finite_differences(circuit):
    params = {7: [5, 3100, 11.2e-12, 0.95, 16000, 1.4e-7, 0.85], 6: [5, 3100, 11.2e-12, 0.95, 1.57e-7, 0.9],
              8: [5, 470, 3100, 11.2e-12, 0.95, 16000, 1.4e-7, 0.85],
              10: [5, 3100, 11.2e-12, 0.95, 300, 1e-10, 0.9, 16000, 1.4e-7, 0.85]}[len(circuit.parameters)]
    omega = 2 * np.pi * np.logspace(7, -1, 30)
    theta = circuit.to_fit(params)
    _, derivatives = circuit.evaluate(np.array(params, dtype=float), omega)
    for k in range(theta.size):
        step = np.zeros_like(theta)
        step[k] = 1e-6
        numeric = (circuit.evaluate(circuit.from_fit(theta + step), omega)[0]
                   - circuit.evaluate(circuit.from_fit(theta - step), omega)[0]) / 2e-6
        assert derivatives[k] == pytest.approx(numeric, rel=1e-5, abs=1e-6 * np.abs(numeric).max())


def test_initial_guess_finds_both_arcs_when_one_is_small(frequencies, noisy):
    params = [5, 3100, 11.2e-12, 1.0, 160, 1.57e-7, 0.85]
    guess = initial_guess(BULK_INTERFACE, frequencies, noisy(BULK_INTERFACE.impedance(params, frequencies), 0))
    assert guess[1] == pytest.approx(3100, rel=0.1)
    assert guess[4] == pytest.approx(160, rel=0.5)


def test_fixed_and_bounded_parameters_and_the_covariance(frequencies, noisy):
    params = CASES["plating, bulk apex 4.6 MHz (partly in the sweep)"][1]
    z = noisy(BULK_INTERFACE.impedance(params, frequencies), 7)
    bounded = fit_spectrum(frequencies, z, bounds={"R0": (4.0, 6.0)})
    assert 4.0 <= bounded.estimate("R0") <= 6.0
    held = fit_spectrum(frequencies, z, fixed={"R0": 5.0})
    assert held.estimate("R0") == pytest.approx(5.0, rel=1e-12) and held.error("R0") == 0.0
    c = held.covariance
    assert c.shape == (len(held.circuit.parameters),) * 2 and np.allclose(c, c.T)
    assert held.error("bulk") == pytest.approx(np.sqrt(c[1, 1]))
    assert held.value("series_bulk") == pytest.approx(5.0 + held.value("bulk"))
    assert abs(held.value("bulk") / 3100 - 1) < 0.05


@pytest.mark.parametrize("kwargs", [{"fixed": {"R9": 1.0}}, {"bounds": {"R0": (6.0, 4.0)}}, {"fixed": {"R0": -1.0}},
                                    {"fixed": {"a1": 1.5}}, {"fixed": {"R0": 5.0}, "bounds": {"R0": (4.0, 6.0)}}])
def test_impossible_constraints_are_refused_by_name(frequencies, kwargs):
    z = BULK_INTERFACE.impedance(CASES["plating, bulk apex 4.6 MHz (partly in the sweep)"][1], frequencies)
    name = next(iter(next(iter(kwargs.values()))))
    with pytest.raises(ValueError, match=name):
        fit_spectrum(frequencies, z, **kwargs)


def test_a_bulk_arc_above_the_sweep_is_not_taken_for_the_leads(frequencies, noisy):
    """The bulk arc's apex at 280 MHz, 40 times above the sweep, a grain-boundary arc inside it: without
    the lead resistance the spectrum looks like R0 ~ 590 ohm and one arc; the fitter must not call the
    grain boundary the bulk. With the lead resistance, what it reports is right."""
    bulk = [575.0, (1 / (2 * np.pi * 280e6)) ** 0.97 / 575.0, 0.97]
    gb = [234.0, (1 / (2 * np.pi * 2e6)) ** 0.9 / 234.0, 0.9]
    interface = [4743.0, (1 / (2 * np.pi * 300)) ** 0.8 / 4743.0, 0.8]
    truth = {"series": 18.7, "bulk": 575.0, "series_bulk": 593.7, "interface": 4743.0}
    z = noisy(THREE_ARCS.impedance([18.7, *bulk, *gb, *interface], frequencies), 3)
    alone = fit_spectrum(frequencies, z)
    assert all(np.isnan(alone.value(role)) for role in ("series", "bulk", "series_bulk")), alone.reason
    leads = fit_spectrum(frequencies, z, lead_resistance=18.5)
    for role, value in truth.items():
        assert np.isnan(leads.value(role)) or abs(leads.value(role) / value - 1) < 0.05, (role, leads.value(role))
