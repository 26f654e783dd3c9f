"""The plans on the simulated lab, at the document level (no databroker needed)."""

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import RunEngineInterrupted
import numpy as np
import pytest

from labctl.core.analysis import CIRCUITS, SHORTED
from labctl.core.clock import VirtualClock
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from plans import plate, rest, set_pressure, set_temperature
from devices.sim.cell import CellParameters

AREA = CellParameters().electrode_area
HOUR = 3600.0


@pytest.fixture
def lab(tmp_path, lab_config):
    def build(**cell):
        lab = build_simulated_lab(lab_config, CellParameters(**cell), tmp_path, VirtualClock(start=1e9))
        RE = make_run_engine(lab.clock)
        docs = []
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        return lab, RE, docs

    return build


def stops(docs):
    return [d for n, d in docs if n == "stop"]


def conditioned(lab, RE):
    RE(set_temperature(lab.chamber, temperature=303.15))
    RE(set_pressure(lab.rig, pressure=5e6))


def test_set_temperature_and_pressure_record_the_environment_and_say_why_they_ended(lab):
    lab, RE, docs = lab()
    conditioned(lab, RE)
    assert lab.simulators["chamber"].temperature() == pytest.approx(303.15, abs=0.5)
    assert lab.simulators["rig"].pressure() == pytest.approx(5e6, abs=0.1e6)
    starts = [d for n, d in docs if n == "start"]
    assert [s["plan_name"] for s in starts] == ["set_temperature", "set_pressure"]
    assert starts[0]["plan_args"]["temperature"] == 303.15
    assert all(s["exit_status"] == "success" for s in stops(docs))
    descriptors = [d["name"] for n, d in docs if n == "descriptor"]
    assert descriptors == ["environment", "result", "environment", "result"]


def test_lithiophobic_cell_plates_until_it_shorts_and_is_left_at_open_circuit(lab):
    lab, RE, docs = lab()
    conditioned(lab, RE)
    RE(rest(lab.potentiostat, lab.chamber, lab.rig, duration=1800.0))
    reason = RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
                      geis_amplitude=0.5, max_duration=24 * HOUR)).plan_result
    cell = lab.simulators["cell"]
    assert cell.state.short_time is not None
    assert reason.startswith("short circuit")
    stop = stops(docs)[-1]
    assert stop["exit_status"] == "success" and stop["reason"] == reason
    assert not lab.simulators["potentiostat"].running
    # detected within a few pages of the short: the last spectrum is measured right after detection
    impedance = [d for n, d in docs if n == "descriptor" and d["name"] == "impedance"][-1]["uid"]
    last_spectrum = [d for n, d in docs if n == "event" and d["descriptor"] == impedance][-1]
    assert 0 < last_spectrum["timestamps"]["potentiostat_eis_z_real"] - cell.state.short_time < 3 * 60 + 60


def test_impedance_rule_stops_at_the_first_spectrum_after_the_short_and_fits_every_spectrum(lab):
    lab, RE, docs = lab()
    conditioned(lab, RE)
    # Voltage rule off (it would need the collapse to last a day): only the fitted spectra can stop it.
    reason = RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
                      geis_amplitude=0.5, max_duration=24 * HOUR, short_hold=24 * HOUR)).plan_result
    short_time = lab.simulators["cell"].state.short_time
    assert reason.startswith("short circuit at") and "impedance dropped" in reason
    streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    spectra = [d for n, d in docs if n == "event" and streams[d["descriptor"]] == "impedance"]
    fits = [d for n, d in docs if n == "event" and streams[d["descriptor"]] == "impedance_fit"]
    assert len(fits) == len(spectra)
    starts = [s["data"]["potentiostat_eis_sweep_start"] for s in spectra]
    assert starts[-2] < short_time < starts[-1], "stopped at the first spectrum after the short"
    r_bulk = [f["data"]["impedance_fit_R1"] for f in fits]  # the raw estimate: near the short r_bulk is nan (not determined)
    assert r_bulk[-2] < 0.8 * max(r_bulk), "the fitted bulk resistance fell before the short"
    assert stops(docs)[-1]["reason"] == reason


def test_spectra_show_bulk_falling_then_collapse(lab):
    lab, RE, docs = lab()
    conditioned(lab, RE)
    RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
             geis_amplitude=0.5, max_duration=24 * HOUR))
    impedance = [d for n, d in docs if n == "descriptor" and d["name"] == "impedance"][0]["uid"]
    spectra = [d["data"] for n, d in docs if n == "event" and d["descriptor"] == impedance]
    low_f = [abs(complex(s["potentiostat_eis_z_real"][-1], s["potentiostat_eis_z_imag"][-1])) for s in spectra]
    high_f = [s["potentiostat_eis_z_real"][0] for s in spectra]
    assert low_f[0] > 2 * low_f[2], "the lithiophobic interface arc shrinks early in plating"
    assert high_f[2] > high_f[-2], "the bulk contribution falls while plating"
    assert 200 < low_f[-1] < 800, "the shorted cell measures a few hundred ohm"


def test_capacity_limit_ends_a_stable_plating(lab):
    lab, RE, docs = lab(surface="lithiophilic")
    conditioned(lab, RE)
    reason = RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
                      geis_interval=900.0, max_capacity=36000.0)).plan_result  # 1 mAh/cm^2
    assert reason.startswith("capacity reached: 1.000")
    assert abs(lab.potentiostat.charge.get()) / AREA == pytest.approx(36000.0, rel=1e-3)


def test_time_limit_ends_plating(lab):
    lab, RE, docs = lab(surface="lithiophilic")
    reason = RE(plate(lab.potentiostat, current_density=5.0, electrode_area=AREA, max_duration=2 * HOUR)).plan_result
    assert reason == "time limit reached: 2.00 h"


def test_finalizer_opens_the_circuit_when_the_plan_fails(lab):
    lab, RE, docs = lab(surface="lithiophilic")
    chamber = lab.simulators["chamber"]
    reads = iter(range(30))

    def chamber_that_dies():
        if next(reads, None) is None:
            raise ConnectionError("chamber stopped answering")
        return chamber.temperature()

    chamber.read_temperature = chamber_that_dies
    with pytest.raises(ConnectionError, match="stopped answering"):
        RE(plate(lab.potentiostat, lab.chamber, current_density=5.0, electrode_area=AREA))
    assert not lab.simulators["potentiostat"].running
    assert stops(docs)[-1]["exit_status"] == "fail"
    assert "stopped answering" in stops(docs)[-1]["reason"]


def test_pause_opens_the_circuit_and_stop_ends_the_run_cleanly(lab):
    lab, RE, docs = lab(surface="lithiophilic")
    sleeps = iter(range(100))

    def pause_after_100_sleeps(msg):
        if msg.command == "sleep" and next(sleeps, None) is None:
            return bpp.pchain(bps.pause(), bpp.single_gen(msg)), None
        return None, None

    with pytest.raises(RunEngineInterrupted):
        RE(bpp.plan_mutator(plate(lab.potentiostat, current_density=5.0, electrode_area=AREA), pause_after_100_sleeps))
    assert RE.state == "paused"
    assert not lab.simulators["potentiostat"].running, "a paused plating step must not keep plating"
    RE.stop()
    assert RE.state == "idle"
    assert stops(docs)[-1]["exit_status"] == "success"
    assert not lab.simulators["potentiostat"].running


def test_set_temperature_refuses_past_the_chamber_range_before_touching_it(lab):
    lab, RE, docs = lab()
    with pytest.raises(ValueError, match="outside the chamber's range"):
        RE(set_temperature(lab.chamber, temperature=500.0))
    assert lab.simulators["chamber"].setpoint == 298.15


def test_the_spectrum_after_a_short_is_fitted_as_a_shorted_cell_with_the_lab_leads(lab):
    lab, RE, docs = lab()
    conditioned(lab, RE)
    cell = lab.simulators["cell"]
    leads = {"potentiostat": cell.params.lead_resistance}
    reason = RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
                      geis_amplitude=0.5, max_duration=24 * HOUR, lead_resistances=leads)).plan_result
    assert reason.startswith("short circuit")
    streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    fits = [d["data"] for n, d in docs if n == "event" and streams[d["descriptor"]] == "impedance_fit"]
    assert [f["impedance_fit_circuit"] for f in fits[:-1]] != [CIRCUITS.index(SHORTED)] * (len(fits) - 1)
    last = fits[-1]
    assert last["impedance_fit_circuit"] == CIRCUITS.index(SHORTED)
    short = last["impedance_fit_r_short"]  # the filament's resistance, or not determined (nan): never a wrong number
    assert np.isnan(short) or short == pytest.approx(cell.state.short_resistance, rel=0.1), (short, last)
    start = next(d for n, d in docs if n == "start" and d["plan_name"] == "plate")
    assert start["plan_args"]["lead_resistances"] == leads and start["plan_args"]["potentiostat"] == "potentiostat"


def test_resumed_plating_plates_for_the_time_it_had_left_however_long_the_pause(lab):
    lab, RE, docs = lab(surface="lithiophilic")
    sleeps = iter(range(100))
    paused = []

    def pause_after_100_sleeps(msg):  # once
        if msg.command == "sleep" and next(sleeps, None) is None and not paused:
            paused.append(msg)
            return bpp.pchain(bps.pause(), bpp.single_gen(msg)), None
        return None, None

    began = lab.clock.now()
    with pytest.raises(RunEngineInterrupted):
        RE(bpp.plan_mutator(plate(lab.potentiostat, current_density=5.0, electrode_area=AREA, max_duration=2 * HOUR),
                            pause_after_100_sleeps))
    lab.clock.advance(HOUR)  # the operator comes back an hour later
    result = RE.resume()
    assert (result.exit_status, result.plan_result) == ("success", "time limit reached: 2.00 h")
    assert lab.clock.now() - began > 3 * HOUR
    ewe = next(d["uid"] for n, d in docs if n == "stream_resource" and d["data_key"] == "potentiostat_Ewe")
    rows = sum(d["indices"]["stop"] - d["indices"]["start"] for n, d in docs
               if n == "stream_datum" and d["stream_resource"] == ewe)
    assert rows == pytest.approx(2 * HOUR, abs=5)  # a sample a second for the full 2 h of plating
