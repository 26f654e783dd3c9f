"""The conditions of every impedance sweep (chamber temperature, stack pressure, the sweep's window)
stored beside its fit in ``impedance_fit``, checked against the environment readings of the window."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.biologic.techniques import PEIS, sweep_duration
from devices.sim.cell import CellParameters
from labctl.core.clock import VirtualClock
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from plans import peis, plate
from plans.spectra import CONDITIONS_SPACING, MAX_READINGS_WITHIN

AREA = CellParameters().electrode_area
HOUR = 3600.0
FIT = "impedance_fit_"
QUANTITIES = {"temperature": ("chamber_temperature", "K"), "pressure": ("rig_pressure", "Pa")}


@pytest.fixture
def lab(tmp_path, lab_config):
    """Build a simulated lab (``rig=False``: one whose lab file has no rig), its RunEngine and documents."""
    labs = []

    def build(rig=True, **cell):
        config = lab_config if rig else lab_config.model_copy(
            update={"instruments": lab_config.instruments.model_copy(update={"rig": None})})
        lab = build_simulated_lab(config, CellParameters(**cell), tmp_path / str(len(labs)), VirtualClock(start=1e9))
        labs.append(lab)
        RE = make_run_engine(lab.clock)
        docs = []
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        return lab, RE, docs

    yield build
    for lab in labs:
        lab.close()


def stream(docs, name):
    """(data, time) of each event of the stream ``name``, in document order, with their positions."""
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == name}
    return [(i, d["data"], d["time"]) for i, (n, d) in enumerate(docs) if n == "event" and d["descriptor"] in uids]


def descriptor(docs, name):
    return next(d for n, d in docs if n == "descriptor" and d["name"] == name)


def readings_of_each_sweep(docs):
    """Each fit's data with the environment readings of its sweep, one per instant of the window.

    They are the environment events between the previous spectrum and this one (document order)
    stamped within the stored window. The page read that ends a plating segment falls on the
    sweep's first instant; on the simulated lab two readings at one instant are the same reading
    (its noise is fixed by the time), so each instant counts once.
    """
    spectra = [i for i, _, _ in stream(docs, "impedance")]
    environment = stream(docs, "environment")
    sweeps = []
    for before, at, (_, fit, _) in zip([-1] + spectra[:-1], spectra, stream(docs, "impedance_fit"), strict=True):
        start, end = fit[FIT + "sweep_window_start"], fit[FIT + "sweep_window_end"]
        by_time = {t: data for i, data, t in environment if before < i < at and start <= t <= end}
        sweeps.append((fit, list(by_time.values())))
    return sweeps


def assert_conditions_match(docs, quantities):
    sweeps = readings_of_each_sweep(docs)
    assert sweeps, "the run fitted spectra"
    for fit, readings in sweeps:
        assert len(readings) >= 2, "read at the sweep's start and end"
        for quantity in quantities:
            field, _ = QUANTITIES[quantity]
            values = [r[field] for r in readings]
            assert fit[FIT + f"{quantity}_mean"] == pytest.approx(np.mean(values), rel=1e-12)
            assert fit[FIT + f"{quantity}_min"] == min(values)
            assert fit[FIT + f"{quantity}_max"] == max(values)
    return sweeps


def test_a_chamber_ramp_and_a_pressure_change_during_plating_are_stored_with_each_fit(lab):
    lab, RE, docs = lab(surface="lithiophilic")
    lab.simulators["chamber"].set_setpoint(318.15)  # ramps at 3 K/min, lagging by minutes
    lab.simulators["rig"].set_target(4e6)
    lab.simulators["rig"].hold(True)
    RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
             geis_interval=600.0, geis_f_min=0.05, max_duration=1 * HOUR))  # sweeps of about 4 min
    sweeps = assert_conditions_match(docs, QUANTITIES)
    temperatures = [fit[FIT + "temperature_max"] - fit[FIT + "temperature_min"] for fit, _ in sweeps]
    assert max(temperatures) > 1.0, "the ramp shows as a range within a sweep"
    pressures = [fit[FIT + "pressure_mean"] for fit, _ in sweeps]
    assert pressures[-1] - pressures[0] > 1e6, "the pressure rose from one sweep to the next"
    keys = descriptor(docs, "impedance_fit")["data_keys"]
    for quantity, (_, unit) in QUANTITIES.items():
        assert {keys[FIT + f"{quantity}_{s}"]["units"] for s in ("mean", "min", "max")} == {unit}
    assert keys[FIT + "sweep_window_start"]["units"] == keys[FIT + "sweep_window_end"]["units"] == "s"


def sweep_windows(docs):
    fits = [data for _, data, _ in stream(docs, "impedance_fit")]
    return [fit[FIT + "sweep_window_end"] - fit[FIT + "sweep_window_start"] for fit in fits]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f_min=st.floats(0.01, 10.0), repeats=st.integers(1, 2))
def test_each_peis_sweep_is_read_at_its_ends_and_between_without_being_lengthened(lab, f_min, repeats):
    sweep = dict(f_max=1e5, f_min=f_min, repeats=repeats, electrode_area=AREA)
    bare, bare_RE, bare_docs = lab()
    bare_RE(peis(bare.potentiostat, **sweep))  # the same sweeps with nothing read around them
    lab, RE, docs = lab()
    lab.simulators["chamber"].set_setpoint(308.15)
    RE(peis(lab.potentiostat, lab.chamber, lab.rig, **sweep))
    expected = sweep_duration(PEIS(amplitude=0.01, f_max=1e5, f_min=f_min, points_per_decade=10))
    sweeps = assert_conditions_match(docs, QUANTITIES)
    assert len(sweeps) == repeats
    for fit, readings in sweeps:
        assert len(readings) == 2 + min(MAX_READINGS_WITHIN, math.floor(expected / CONDITIONS_SPACING))
    assert sweep_windows(docs) == pytest.approx(sweep_windows(bare_docs), abs=1e-6)  # the clock's rounding at 1e9 s
    assert min(sweep_windows(docs)) >= expected - 1e-6


def test_plating_in_a_lab_without_rig_stores_pressure_not_measured(lab):
    lab, RE, docs = lab(rig=False, surface="lithiophilic")
    assert lab.rig is None
    lab.simulators["chamber"].set_setpoint(318.15)
    RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
             geis_interval=600.0, geis_f_min=0.05, max_duration=0.5 * HOUR))
    assert [d["exit_status"] for n, d in docs if n == "stop"] == ["success"]
    for fit, readings in assert_conditions_match(docs, ["temperature"]):
        assert all(math.isnan(fit[FIT + f"pressure_{s}"]) for s in ("mean", "min", "max"))
        assert all("rig_pressure" not in r for r in readings)
    units = descriptor(docs, "impedance_fit")["data_keys"][FIT + "pressure_mean"]["units"]
    assert units == "Pa", "a value not measured keeps its unit"


def test_a_spectrum_without_chamber_or_rig_stores_not_measured_and_reads_nothing(lab):
    lab, RE, docs = lab(rig=False)
    RE(peis(lab.potentiostat, f_max=1e5, f_min=1.0, electrode_area=AREA))
    assert not stream(docs, "environment"), "nothing to read, nothing read"
    fit = stream(docs, "impedance_fit")[0][1]
    for quantity in QUANTITIES:
        assert all(math.isnan(fit[FIT + f"{quantity}_{s}"]) for s in ("mean", "min", "max"))
    assert fit[FIT + "sweep_window_end"] > fit[FIT + "sweep_window_start"]
