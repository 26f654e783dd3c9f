"""Ionic conductivity against temperature on the simulated Ni/LLZTO/Ni cell: the numbers one could publish."""

import math

import numpy as np
import pytest

from devices.sim.cell import CellParameters
from labctl.core.analysis.conductivity import BOLTZMANN_EV
from labctl.core.clock import VirtualClock
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from plans.conductivity import ionic_conductivity_arrhenius

CELSIUS = 273.15
TEMPERATURES = [CELSIUS + t for t in range(-20, 61, 10)]


def run(tmp_path, lab_config, params: CellParameters, **kwargs):
    lab = build_simulated_lab(lab_config, params, tmp_path, VirtualClock(start=1e9))
    RE, docs = make_run_engine(lab.clock), []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    devices = lab.devices()
    try:
        RE(ionic_conductivity_arrhenius(
            devices["potentiostat"], devices["chamber"], temperatures=TEMPERATURES, f_min=10.0,
            electrode_area=params.electrode_area, thickness=params.thickness, cell_kind=params.kind,
            record_interval=300.0, **kwargs))
    finally:
        lab.close()
    events = {}
    descriptors = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    for name, doc in docs:
        if name == "event":
            events.setdefault(descriptors[doc["descriptor"]], []).append(doc["data"])
    stop = next(d for n, d in docs if n == "stop")
    return events, stop


def model_conductivity(params: CellParameters, temperature: float) -> float:
    sigma_25 = params.bulk_conductivity_25c * params.relative_density**1.5
    return sigma_25 * math.exp(-params.bulk_activation_energy / BOLTZMANN_EV * (1 / temperature - 1 / 298.15))


def test_blocking_cell_from_minus_20_to_60_degC_gives_the_models_activation_energy(tmp_path, lab_config):
    params = CellParameters(kind="blocking")
    events, stop = run(tmp_path, lab_config, params)
    (result,) = events["arrhenius"]
    points = events["conductivity"]
    assert stop["exit_status"] == "success"
    ea, ea_err = result["arrhenius_activation_energy"], result["arrhenius_activation_energy_err"]
    assert ea == pytest.approx(params.bulk_activation_energy, rel=0.02)
    assert abs(ea - params.bulk_activation_energy) < 3 * ea_err + 1e-3  # the error bar is honest
    sigma_25 = result["arrhenius_sigma_25c"]
    assert sigma_25 == pytest.approx(model_conductivity(params, 298.15), rel=0.05)
    assert 0 < result["arrhenius_sigma_25c_err"] < 0.05 * sigma_25
    # every point that entered has a determined bulk; the cold ones are fitted as the blocking cell they are
    for point in points:
        if point["conductivity_included"]:
            assert point["conductivity_sigma"] == pytest.approx(
                model_conductivity(params, point["conductivity_temperature"]), rel=0.05)
    assert result["arrhenius_points_used"] + result["arrhenius_points_excluded"] == len(TEMPERATURES)
    assert "E_a = " in stop["reason"] and "sigma(25 degC)" in stop["reason"]


def test_a_spectrum_that_does_not_determine_the_bulk_is_left_out_with_the_reason(tmp_path, lab_config):
    """A thin, conductive pellet: its bulk arc is far above 7 MHz when warm, so R0 and R_bulk cannot
    be told apart without a lead resistance; those points are listed, not used."""
    params = CellParameters(kind="blocking", thickness=0.3e-3, stray_capacitance=20e-12)
    events, stop = run(tmp_path, lab_config, params)
    points = events["conductivity"]
    left_out = [p for p in points if not p["conductivity_included"]]
    assert left_out, "the warm points cannot determine the bulk"
    for point in left_out:
        assert point["conductivity_excluded"] and np.isnan(point["conductivity_sigma"])
        assert f"{point['conductivity_temperature'] - CELSIUS:.1f} degC: " in stop["reason"]
    for point in points:
        if point["conductivity_included"]:
            assert point["conductivity_sigma"] == pytest.approx(
                model_conductivity(params, point["conductivity_temperature"]), rel=0.05)
    # with the lab file's lead resistance R0 is bounded, and the warm points are determined too
    events, _ = run(tmp_path / "leads", lab_config, params, lead_resistances={"potentiostat": params.lead_resistance})
    assert sum(p["conductivity_included"] for p in events["conductivity"]) > len(points) - len(left_out)


def test_the_example_file_measures_on_the_mtz35_up_to_35_mhz():
    """configs/conductivity-arrhenius.yaml on lab-sim.yaml, which has an MTZ-35 and lead resistances."""
    from pathlib import Path

    from labctl.config import load_experiment, load_lab
    from labctl.dryrun import dry_run

    configs = Path(__file__).resolve().parents[2] / "configs"
    lab = load_lab(configs / "lab-sim.yaml")
    docs = []
    dry_run(load_experiment(configs / "conductivity-arrhenius.yaml", lab=lab), lab,
            on_document=lambda n, d: docs.append((n, d)))
    start = next(d for n, d in docs if n == "start" and d["plan_name"] == "ionic_conductivity_arrhenius")
    assert start["impedance_device"] == "impedance_analyser"
    names = {d["uid"]: d["name"] for n, d in docs if n == "descriptor" and d["run_start"] == start["uid"]}
    spectra = [d["data"] for n, d in docs if n == "event" and names.get(d["descriptor"]) == "impedance"]
    assert max(spectra[0]["impedance_analyser_frequency"]) == pytest.approx(35e6)
    (result,) = [d["data"] for n, d in docs if n == "event" and names.get(d["descriptor"]) == "arrhenius"]
    assert result["arrhenius_activation_energy"] == pytest.approx(0.40, rel=0.02)
