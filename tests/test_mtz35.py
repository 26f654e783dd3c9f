"""The MTZ-35 impedance analyser: device and backend against the simulator on the cell model, the lab
file's section, and peis on it from an experiment file."""

from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
import xarray as xr

from devices.biologic.analyser import ImpedanceAnalyser
from devices.biologic.mtz35 import MTZ35Backend
from devices.biologic.techniques import PEIS
from devices.sim.cell import CellParameters, SimCell
from devices.sim.mtz35 import SimMTZ35
from labctl.core.clock import VirtualClock
from labctl.config import load_experiment, load_lab
from labctl.dryrun import dry_run
from labctl.core.errors import ConfigErrors, LimitError
from labctl.report import write_report
from labctl.session import make_run_engine

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPER = PEIS(amplitude=0.01, f_max=3.7e6, f_min=1.0)  # the seed paper's MTZ-35 sweep


@pytest.fixture
def analyser():
    clock = VirtualClock(start=1e9)
    cell = SimCell(CellParameters(surface="lithiophilic"), lambda t: 303.15, lambda t: 5e6,
                   np.random.default_rng(7), clock.now())
    sim = SimMTZ35(clock, cell)
    device = ImpedanceAnalyser(backend=MTZ35Backend(sim, clock, max_amplitude=0.1), clock=clock,
                               name="impedance_analyser")
    return clock, cell, sim, device


def test_a_spectrum_is_one_event_matching_the_cell_model_within_noise(analyser):
    clock, cell, sim, device = analyser
    RE, docs = make_run_engine(clock), []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))

    @bpp.run_decorator()
    def plan():
        yield from bps.prepare(device, PAPER, wait=True)
        status = yield from bps.trigger(device, group="eis")
        while not status.done:  # the sweep finishes as the virtual clock passes, which sleeping moves
            yield from bps.sleep(1.0)
        yield from bps.create(name="impedance")
        yield from bps.read(device)
        yield from bps.save()

    RE(plan())
    (event,) = [d for n, d in docs if n == "event"]
    data = event["data"]
    frequency = np.asarray(data["impedance_analyser_frequency"])
    np.testing.assert_allclose(frequency, PAPER.frequencies())
    z = np.asarray(data["impedance_analyser_z_real"]) + 1j * np.asarray(data["impedance_analyser_z_imag"])
    error = np.abs(z - cell.impedance(frequency, noisy=False)) / np.abs(z)
    assert np.median(error) < 0.01 and error.max() < 0.05  # 0.5 % of |Z| plus a 0.05 ohm floor
    assert device.end_reason.get() == "completed"


def test_a_sweep_takes_its_periods_and_settling_on_the_virtual_clock(analyser):
    clock, cell, sim, device = analyser
    start = clock.now()
    device.prepare(PAPER)
    status = device.trigger()
    expected = sum(PAPER.cycles / f + 0.1 for f in PAPER.frequencies())  # 2 periods + 0.1 s per point
    clock.advance(expected - 1e-3)
    assert not status.done and sim.busy()
    clock.advance(1e-3)
    assert status.done
    assert device.sweep_start.get() == start
    assert len(device.frequency.get()) == len(PAPER.frequencies())


@pytest.mark.parametrize("technique, quantity", [
    (PEIS(amplitude=0.01, f_max=50e6, f_min=1.0), "f_max"),        # above the MTZ-35's 35 MHz
    (PEIS(amplitude=0.01, f_max=1e6, f_min=1e-6), "f_min"),        # below its 10 uHz
    (PEIS(amplitude=0.01, f_max=10.0, f_min=100.0), "f_min"),      # a sweep upside down
    (PEIS(amplitude=0.5, f_max=1e6, f_min=1.0), "amplitude"),      # past the lab's 100 mV cap
])
def test_settings_out_of_range_are_refused_before_anything_is_sent(analyser, technique, quantity):
    clock, cell, sim, device = analyser
    with pytest.raises(LimitError, match=quantity):
        device.prepare(technique)
    with pytest.raises(LimitError, match=quantity):  # and by the backend, were prepare skipped
        device.backend.start(technique)
    assert sim.sweeps == 0 and not device.backend.running


def test_the_lab_cap_cannot_pass_the_generator_level(analyser):
    clock, cell, sim, device = analyser
    with pytest.raises(ValueError, match="max_amplitude"):
        MTZ35Backend(sim, clock, max_amplitude=12.0)


def test_stop_mid_sweep_switches_off_and_keeps_the_points_measured(analyser):
    clock, cell, sim, device = analyser
    device.prepare(PAPER)
    status = device.trigger()
    clock.advance(1.0)  # the megahertz decades take a second; the low frequencies are still to come
    device.stop()
    assert status.done and device.end_reason.get() == "stopped"
    measured = len(device.frequency.get())
    assert 0 < measured < len(PAPER.frequencies())
    assert not sim.busy() and not device.backend.running
    clock.advance(60.0)
    assert len(sim.points()[0]) == measured


EXPERIMENT = f"""\
name: mtz35-peis
lab: {CONFIGS / "lab-sim.yaml"}
cell:
  id: LLZTO-MTZ-1
  kind: symmetric
  thickness: 1.2 mm
  electrode_diameter: 2 mm
  surface: lithiophilic
steps:
  - plan: set_pressure
    pressure: 5 MPa
  - plan: peis
    amplitude: 10 mV
    f_max: 35 MHz          # past the SP-200's 7 MHz: the whole bulk arc
    f_min: 1 Hz
    repeats: 2
"""


@pytest.fixture(scope="module")
def peis_run(tmp_path_factory):
    """Dry-run EXPERIMENT on configs/lab-sim.yaml; return (outcomes, the peis run's start, streams' events, sims)."""
    path = tmp_path_factory.mktemp("mtz35") / "peis.yaml"
    path.write_text(EXPERIMENT)
    lab = load_lab(CONFIGS / "lab-sim.yaml")
    docs, sims = [], {}
    outcomes = dry_run(load_experiment(path, lab=lab), lab, on_document=lambda n, d: docs.append((n, d)),
                       inspect=lambda lab: sims.update(lab.simulators))
    start = next(d for n, d in docs if n == "start" and d["plan_name"] == "peis")
    stop = next(d for n, d in docs if n == "stop" and d["run_start"] == start["uid"])
    names = {d["uid"]: d["name"] for n, d in docs if n == "descriptor" and d["run_start"] == start["uid"]}
    streams = {}
    for n, d in docs:
        if n == "event" and d["descriptor"] in names:
            streams.setdefault(names[d["descriptor"]], []).append(d)
    return outcomes, start, stop, streams, sims


def test_peis_from_an_experiment_file_runs_on_the_mtz35_and_fits_the_bulk(peis_run):
    outcomes, start, stop, streams, sims = peis_run
    assert [o.exit_status for o in outcomes] == ["success", "success"], [o.reason for o in outcomes]
    assert start["impedance_device"] == "impedance_analyser"
    spectra = [e["data"] for e in streams["impedance"]]
    fits = [e["data"] for e in streams["impedance_fit"]]
    assert len(spectra) == len(fits) == 2 and sims["impedance_analyser"].sweeps == 2
    assert not any(key.startswith("potentiostat_") for key in spectra[0])
    assert max(spectra[0]["impedance_analyser_frequency"]) == pytest.approx(35e6)
    bulk = sims["cell"].resistances()["bulk"]
    assert fits[-1]["impedance_fit_r_bulk"] == pytest.approx(bulk, rel=0.03)


def test_the_report_draws_a_peis_run_measured_on_the_mtz35(peis_run, stored_run, tmp_path):
    outcomes, start, stop, streams, sims = peis_run

    def dataset(events):
        data = {key: np.asarray([e["data"][key] for e in events]) for key in events[0]["data"]}
        variables = {key: (("time", *(f"{key}_{i}" for i in range(1, v.ndim))), v) for key, v in data.items()}
        return xr.Dataset(variables, coords={"time": [e["time"] for e in events]})

    run = stored_run(start, stop, {name: dataset(events) for name, events in streams.items()})
    page = write_report(run, tmp_path)
    assert page.is_file()
    assert sorted(p.name.removeprefix(start["uid"][:8]) for p in tmp_path.glob("*.png")) == ["-peis-drt.png", "-peis.png"]


def test_a_real_lab_with_an_mtz35_is_refused_at_load_naming_why(tmp_path):
    text = (CONFIGS / "lab-sim.yaml").read_text()
    real = (text.replace("simulated: true", "simulated: false")
            .replace("# library:", "library:").replace("address: sim         #", "address: 192.168.0.10  #")
            .replace("address: sim                # real labs: tcp", "address: tcp://192.168.0.11:502  # tcp")
            .replace("address: sim                # real labs: a serial", "address: /dev/ttyUSB1  # serial")
            .replace("address: sim                # simulated labs", "address: 192.168.0.12  #"))
    (tmp_path / "lab.yaml").write_text(real)
    with pytest.raises(ConfigErrors) as caught:
        load_lab(tmp_path / "lab.yaml")
    (error,) = caught.value.errors
    assert error.field == "instruments.impedance_analyser"
    assert "BioLogic publishes no programming interface" in error.message


def test_the_amplitude_cap_in_the_lab_file_is_bounded_by_the_generator(tmp_path):
    text = (CONFIGS / "lab-sim.yaml").read_text().replace("max_amplitude: 100 mV", "max_amplitude: 12 V")
    (tmp_path / "lab.yaml").write_text(text)
    with pytest.raises(ConfigErrors, match=r"max_amplitude: 12 V is out of range: allowed > 0 and <= 10 V"):
        load_lab(tmp_path / "lab.yaml")
