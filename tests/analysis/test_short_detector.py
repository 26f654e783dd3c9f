"""The short detector on the cell model, across current densities, cell kinds and seeds, and on its rules alone.

The sweep drives :class:`devices.sim.cell.SimCell` and :class:`labctl.core.analysis.ShortDetector`
directly, as ``plate`` does (a voltage check every minute, a spectrum every 15 min), and takes the
true onset of the short from the simulator's state. Full ``plate`` runs are in tests/test_plans.py.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from devices.sim.cell import CellParameters, SimCell
from labctl.core.analysis import ShortDetector

CHECK = 60.0  # s, plate's check_interval
SPECTRUM = 900.0  # s, plate's geis_interval
LOWEST_FREQUENCY = np.array([0.5])  # Hz, plate's geis_f_min
MA_CM2 = 10.0  # A/m^2 per mA/cm^2
CAPACITY = 3.0 * 36_000  # C/m^2 (3 mAh/cm^2): how long a cell that does not short is watched
DENSITIES = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0]  # mA/cm^2
SURFACES = ["lithiophobic", "lithiophilic"]


def plate_and_watch(density: float, seed: int, temperature: float = 303.15, pressure: float = 5e6, **params):
    """Plate at ``density`` (mA/cm^2) with both rules watching, until both have fired or the capacity is passed.

    Returns (cell, {rule: time it fired}, {rule: time of the previous observation}, why undetermined or None).
    """
    p = CellParameters(**params)
    cell = SimCell(p, lambda t: temperature, lambda t: pressure, np.random.default_rng(seed), 0.0)
    current = -density * MA_CM2 * p.electrode_area
    detector = ShortDetector(current)
    detector.open_circuit_voltage = cell.rest(np.array([1.0]))[0]
    spectra = ShortDetector(current)  # the impedance rule alone, to time it separately
    spectra.add_spectrum(0.0, cell.impedance(LOWEST_FREQUENCY).real[0])
    fired, before = {}, {}
    t, end = 0.0, CAPACITY / (density * MA_CM2)
    while len(fired) < 2 and (t < end or cell.state.short_time is not None):
        t += CHECK
        voltage = cell.galvanostatic(np.array([t]), current)[0]
        if "voltage" not in fired and detector.add_voltage(t, voltage):
            fired["voltage"], before["voltage"] = t, t - CHECK
        if t % SPECTRUM == 0 and "impedance" not in fired:
            if spectra.add_spectrum(t, cell.impedance(LOWEST_FREQUENCY).real[0]):
                fired["impedance"], before["impedance"] = t, t - SPECTRUM
        if cell.state.short_time is not None and t > cell.state.short_time + SPECTRUM + CHECK:
            break  # both rules have had their chance
    return cell, fired, before, detector.undetermined or spectra.undetermined


def assert_caught_at_the_first_look_after_the_onset(cell, fired, before, undetermined=None):
    """Caught at the first check and the first spectrum after the onset; where the detector said it
    cannot tell a short from this cell, a rule may stay silent, but none fires before the onset."""
    short = cell.state.short_time
    if short is None:
        assert fired == {}, f"fired on a cell that did not short: {fired}"
        return
    if undetermined is None:
        assert set(fired) == {"voltage", "impedance"}, f"short at {short:.0f} s, fired: {fired}"
    for rule in fired:
        # At 10 mA/cm^2 the network crosses the pellet in seconds: a check may see the cell at a
        # short's resistance just before the filament bridges; never earlier than one check before.
        assert before[rule] < short <= fired[rule] or fired[rule] < short <= fired[rule] + CHECK, (
            f"{rule} rule: short at {short:.0f} s, fired at {fired[rule]:.0f} s")


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("density", DENSITIES)
def test_short_caught_within_one_check_and_one_spectrum_at_every_density(density, surface):
    """Three seeds per density and kind; the cells that short are caught at the first check and the
    first spectrum after the onset, the others (below their critical current) never fire."""
    for seed in (1, 2, 3):
        cell, fired, before, undetermined = plate_and_watch(density, seed, surface=surface)
        assert undetermined is None, undetermined  # at 30 degC both rules can always tell
        assert_caught_at_the_first_look_after_the_onset(cell, fired, before)


def test_the_sweep_covers_cells_that_short_and_cells_that_do_not():
    """Otherwise the sweep above could pass by never seeing a short, or only shorts."""
    shorted = {(d, s): plate_and_watch(d, 1, surface=s)[0].state.short_time is not None
               for d in (0.1, 0.5, 2.0, 10.0) for s in SURFACES}
    assert not shorted[0.1, "lithiophobic"] and not shorted[2.0, "lithiophilic"]
    assert shorted[0.5, "lithiophobic"] and shorted[2.0, "lithiophobic"] and shorted[10.0, "lithiophilic"]


@settings(max_examples=30, deadline=None)
@given(density=st.floats(0.05, 10.0), surface=st.sampled_from(SURFACES + ["tracer"]), seed=st.integers(0, 2**32),
       pressure=st.sampled_from([0.0, 2e6, 5e6, 10e6]), celsius=st.sampled_from([0.0, 30.0, 45.0, 60.0]))
def test_any_density_kind_seed_pressure_and_temperature(density, surface, seed, pressure, celsius):
    """Up to 60 degC: hotter, a lithiophilic cell's own resistance nears the filament's (README)."""
    kind = {"surface": surface} if surface != "tracer" else {"kind": "tracer"}
    cell, fired, before, undetermined = plate_and_watch(density, seed, temperature=273.15 + celsius,
                                                        pressure=pressure, **kind)
    if undetermined is not None:  # only a hot, well-wetted cell comes near a filament's resistance
        assert celsius >= 45 and surface == "lithiophilic", undetermined
    assert_caught_at_the_first_look_after_the_onset(cell, fired, before, undetermined)


@pytest.mark.parametrize("density", [0.5, 10.0])
def test_a_blocking_cell_never_fires(density):
    cell, fired, _, _ = plate_and_watch(density, 1, kind="blocking")
    assert cell.state.short_time is None and fired == {}


def test_soft_shorts_before_the_short_do_not_fire():
    """Lithiophilic at 5 mA/cm^2: voltage instability as the network nears the counter electrode."""
    softened = 0
    for seed in range(8):
        cell, fired, before, undetermined = plate_and_watch(5.0, seed, surface="lithiophilic")
        assert cell.state.short_time is not None and undetermined is None
        softened += any(start < cell.state.short_time for start, _, _ in cell.state.soft_shorts)
        assert_caught_at_the_first_look_after_the_onset(cell, fired, before)
    assert softened >= 6


# ---- the rules alone ----------------------------------------------------------------------------
I = 15.7e-6  # A, 0.5 mA/cm^2 on 2 mm electrodes


def test_wetting_of_a_lithiophobic_interface_is_not_a_short():
    """The interface falls from 2000 to 500 ohm cm^2 in minutes: voltage and impedance fall fourfold."""
    detector = ShortDetector(I)
    for t, volts in enumerate([1.05, 0.9, 0.6, 0.4, 0.3, 0.27, 0.26]):
        assert detector.add_voltage(60.0 * t, -volts) is None
    assert detector.add_spectrum(0.0, 66_800) is None
    assert detector.add_spectrum(900.0, 18_900) is None


def test_voiding_is_not_a_short():
    detector = ShortDetector(I)
    assert all(detector.add_voltage(60.0 * t, -0.06 * 1.1**t) is None for t in range(40))
    assert detector.add_spectrum(0.0, 4_000) is None and detector.add_spectrum(900.0, 9_000) is None


def test_a_soft_short_falls_but_stays_outside_the_band():
    """A 3 kohm filament across a 4 kohm cell: the voltage falls by 60 %, to 1.7 kohm x I."""
    detector = ShortDetector(I)
    for t in range(5):
        assert detector.add_voltage(60.0 * t, -4000 * I) is None
    assert detector.add_voltage(300.0, -1714 * I) is None
    assert detector.add_spectrum(0.0, 4_000) is None and detector.add_spectrum(900.0, 1_714) is None


def test_a_fall_into_the_band_is_a_short_at_any_current():
    for current in (3.1e-6, 15.7e-6, 314e-6, 3.14e-3):  # 0.1 to 100 mA/cm^2 on 2 mm electrodes
        detector = ShortDetector(current)
        for t in range(5):
            assert detector.add_voltage(60.0 * t, -20_000 * current) is None
        reason = detector.add_voltage(300.0, -470 * current)
        assert reason.startswith("short circuit at 1970-01-01T00:05:00+00:00: |Ewe| = ")
        assert "470 ohm" in reason and detector.short_time == 300.0 and detector.rule == "voltage"


def test_in_the_band_without_a_fall_is_not_a_short():
    """A hot, thin cell whose own resistance is a few hundred ohm."""
    detector = ShortDetector(I)
    assert all(detector.add_voltage(60.0 * t, -400 * I * (1 - 0.01 * t)) is None for t in range(20))


def test_hold_asks_the_voltage_to_stay_in_the_band():
    detector = ShortDetector(I, hold=60.0)
    for t in range(5):
        detector.add_voltage(10.0 * t, -20_000 * I)
    assert detector.add_voltage(50.0, -480 * I) is None
    assert detector.add_voltage(80.0, -4_000 * I) is None  # back out: it was a soft short
    assert detector.add_voltage(90.0, -480 * I) is None
    assert detector.add_voltage(120.0, -480 * I) is None
    assert detector.add_voltage(150.0, -480 * I).startswith("short circuit at 1970-01-01T00:01:30+00:00")


def test_the_open_circuit_voltage_of_a_tracer_cell_is_taken_off():
    detector = ShortDetector(I, open_circuit_voltage=3e-3)
    for t in range(5):
        detector.add_voltage(60.0 * t, 3e-3 - 20_000 * I)
    assert detector.add_voltage(300.0, 3e-3 - 480 * I) is not None


def test_impedance_rule_needs_both_the_drop_and_the_band():
    detector = ShortDetector(I, drop=0.9)
    detector.add_spectrum(0.0, 20_000)
    assert detector.add_spectrum(900.0, 4_000) is None  # -80 %, less than asked, and outside the band
    detector = ShortDetector(I)
    detector.add_spectrum(0.0, 700)
    assert detector.add_spectrum(900.0, 500) is None  # in the band, but from a cell already near it
    reason = ShortDetector(I)
    reason.add_spectrum(0.0, 17_000)
    text = reason.add_spectrum(900.0, 470)
    assert text.startswith("short circuit at 1970-01-01T00:15:00+00:00 (after 1970-01-01T00:00:00+00:00)")
    assert reason.rule == "impedance" and reason.short_time == 900.0


def test_a_soft_short_during_the_previous_spectrum_does_not_hide_the_drop():
    detector = ShortDetector(I)
    detector.add_spectrum(0.0, 1_400)
    detector.add_spectrum(900.0, 640)  # two filaments touching as it was measured
    assert detector.add_spectrum(1800.0, 330) is not None  # -76 % on the larger of the two before


def test_a_cell_whose_own_resistance_nears_the_band_is_not_determined_and_says_so():
    """At 60 degC a lithiophilic cell nearly bridged is ~270 ohm: a short (-36 %) and a soft short
    across it look alike, so neither rule stops on it, and the detector says why."""
    detector = ShortDetector(I)
    for t in range(5):
        assert detector.add_voltage(60.0 * t, -275 * I) is None
    assert detector.add_voltage(300.0, -173 * I) is None
    assert detector.undetermined.startswith("the cell's own resistance (275 ohm) came within 1.5 x the short band")
    spectra = ShortDetector(I)
    spectra.add_spectrum(0.0, 700)
    assert spectra.add_spectrum(900.0, 250) is None and "low-frequency resistance (700 ohm)" in spectra.undetermined


def test_a_detector_needs_the_current():
    with pytest.raises(ValueError, match="needs the applied current"):
        ShortDetector(0.0)


def test_the_band_default_sits_between_a_short_and_the_softest_soft_short():
    """The physics the band rests on (cell-model.md, README): a filament of 0.9-1.1 x 480 ohm;
    soft shorts at least 4 x 480 ohm, across a cell whose bulk keeps a quarter of its resistance."""
    p, band = CellParameters(surface="lithiophilic"), ShortDetector(I).short_resistance
    cell = SimCell(p, lambda t: 303.15, lambda t: 5e6, np.random.default_rng(0), 0.0)
    cell.state.depth_we = p.thickness * (1 - 1e-9)  # the network about to bridge
    r = cell.resistances()
    nearly = r["bulk"] + r["interface"] + p.lead_resistance
    softest = 1 / (1 / (p.soft_short_floor * p.short_resistance) + 1 / nearly)
    assert 1.1 * p.short_resistance < band < softest
