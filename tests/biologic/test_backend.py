"""The potentiostat channel on the EC-Lab stack: binding, encoder, simulated library and parser together."""

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest

from devices.biologic.backend import EClibBackend
from devices.biologic.channel import PotentiostatChannel
from devices.biologic.eclib import EClib
from devices.biologic.techniques import CA, CP, GEIS, OCV
from devices.errors import InstrumentFault, InstrumentLost
from devices.sim.cell import CellParameters
from devices.sim.eclib import SimEClib
from labctl.core.clock import VirtualClock
from labctl.core.errors import CurrentOutOfRange
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from plans import plate, rest, set_pressure, set_temperature

AREA = CellParameters().electrode_area
PLATING = -5.0 * AREA  # 0.5 mA/cm^2
HOUR = 3600.0


def eclib_channel(clock, cell, assets_dir, **limits):
    """A PotentiostatChannel whose backend is the EC-Lab stack over a simulated SP-200."""
    sim = SimEClib(clock, cell)
    backend = EClibBackend(EClib(sim), clock, address="USB0", channel=1, **limits)
    return PotentiostatChannel(backend=backend, clock=clock, assets_dir=assets_dir, name="potentiostat"), sim


@pytest.fixture
def bench(tmp_path, clock, cell):
    channel, sim = eclib_channel(clock, cell, tmp_path, voltage_window=(-2.0, 2.0), current_limit=0.01)
    RE = make_run_engine(clock)
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return channel, sim, RE, docs


def fly(channel, technique):
    @bpp.stage_decorator([channel])
    @bpp.run_decorator()
    def plan():
        yield from bps.declare_stream(channel, name="potentiostat", collect=True)
        yield from bps.prepare(channel, technique, wait=True)
        yield from bps.kickoff(channel, wait=True)
        status = yield from bps.complete(channel, wait=False, group="done")
        while not status.done:
            yield from bps.sleep(60.0)
            yield from bps.collect(channel, name="potentiostat")
        yield from bps.wait(group="done")
        yield from bps.collect(channel, name="potentiostat")

    return plan()


def test_plating_with_operando_geis_runs_through_the_whole_stack_until_the_short(tmp_path, lab_config, rows_on_disk):
    clock = VirtualClock(start=1e9)
    lab = build_simulated_lab(lab_config, CellParameters(), tmp_path, clock)
    potentiostat, sim = eclib_channel(clock, lab.simulators["cell"], tmp_path, voltage_window=(-10.0, 10.0))
    RE = make_run_engine(clock)
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(set_temperature(lab.chamber, temperature=303.15))
    RE(set_pressure(lab.rig, pressure=5e6))
    RE(rest(potentiostat, lab.chamber, lab.rig, duration=1800.0))
    reason = RE(plate(potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
                      geis_amplitude=0.5, max_duration=24 * HOUR)).plan_result
    cell = lab.simulators["cell"]
    assert reason.startswith("short circuit") and cell.state.short_time is not None
    assert not sim.running, "the cell is left at open circuit"
    impedance = [d for n, d in docs if n == "descriptor" and d["name"] == "impedance"][-1]["uid"]
    spectra = [d for n, d in docs if n == "event" and d["descriptor"] == impedance]
    assert len(spectra) >= 3
    first, plating = spectra[0]["data"], spectra[1]["data"]
    assert len(first["potentiostat_eis_frequency"]) == len(GEIS(0.0, 1e-5).frequencies())
    assert first["potentiostat_eis_i_dc"] == pytest.approx(0.0, abs=1e-9)  # before plating: no bias
    assert plating["potentiostat_eis_i_dc"] == pytest.approx(PLATING, rel=1e-5)  # GEIS bias = plating current
    low_f = [abs(complex(s["data"]["potentiostat_eis_z_real"][-1], s["data"]["potentiostat_eis_z_imag"][-1]))
             for s in spectra]
    assert 200 < low_f[-1] < 800 < low_f[0], "the shorted cell measures a few hundred ohm"
    # The plating run's rows are 1 s apart within each constant-current segment, in order.
    plating_run = [d for n, d in docs if n == "start"][-1]["uid"]
    time = rows_on_disk([(n, d) for n, d in docs if n == "stream_resource" and d["run_start"] == plating_run], "time")
    steps = np.diff(time)
    assert np.all(steps > 0) and np.median(steps) == pytest.approx(1.0, abs=1e-4)


def test_the_instrument_stops_a_constant_current_at_the_voltage_window(bench, rows_on_disk):
    channel, sim, RE, docs = bench
    RE(fly(channel, CP(-0.005, 600.0, 1.0)))  # 5 mA through kiloohms: far past 2 V
    assert channel.end_reason.get() == "voltage limit"
    assert not sim.running and not channel.backend.running
    assert sim.loaded[0].stem == "cplimit", "the window is enforced by the channel itself"
    assert len(rows_on_disk(docs, "Ewe")) < 600


def test_the_instrument_stops_a_constant_voltage_at_the_current_limit(tmp_path, clock, cell):
    channel, sim = eclib_channel(clock, cell, tmp_path, voltage_window=(-2.0, 2.0), current_limit=1e-4)
    RE = make_run_engine(clock)
    RE(fly(channel, CA(1.0, 600.0, 1.0)))  # 1 V across a few kiloohm: more than 0.1 mA
    assert channel.end_reason.get() == "current limit" and sim.loaded[0].stem == "calimit"


def test_a_current_past_the_limit_is_refused_before_loading(bench):
    channel, sim, RE, docs = bench
    with pytest.raises(CurrentOutOfRange, match="20 mA"):
        channel.backend.start(CP(-0.02, 60.0))
    assert sim.loaded == []


def test_rows_and_charge_match_the_in_process_simulator_contract(bench, rows_on_disk):
    channel, sim, RE, docs = bench
    RE(fly(channel, OCV(120.0, 10.0)))
    RE(fly(channel, CP(PLATING, 900.0, 1.0)))
    assert channel.end_reason.get() == "completed"
    assert channel.charge.get() == pytest.approx(PLATING * 900.0, rel=1e-6)
    r = sim.cell.resistances()
    expected = PLATING * (r["bulk"] + r["interface"] + sim.cell.params.lead_resistance)
    assert channel.ewe.get() == pytest.approx(expected, rel=0.02)
    assert len(rows_on_disk(docs, "Ewe")) == 12


def test_stop_opens_the_circuit_and_keeps_every_row(bench):
    channel, sim, RE, docs = bench

    def failing():
        yield from bps.prepare(channel, CP(PLATING, 3600.0, 1.0), wait=True)
        yield from bps.kickoff(channel, wait=True)
        yield from bps.sleep(600)
        raise RuntimeError("something else broke")

    @bpp.stage_decorator([channel])
    @bpp.run_decorator()
    def plan():
        yield from bps.declare_stream(channel, name="potentiostat", collect=True)
        yield from bpp.finalize_wrapper(failing(), bps.stop(channel))

    with pytest.raises(RuntimeError, match="something else broke"):
        RE(plan())
    assert not sim.running and channel.backend.end_reason == "stopped"
    # Every row measured before the stop: those already made durable in the HDF5 file (every few
    # seconds, whatever the page interval), then those still in the backend, not yet collected.
    written = np.concatenate([rows_in_file(path, "time") for path in sorted(channel.assets_dir.glob("*.h5"))])
    times = np.concatenate([written, channel.backend.read_rows()["time"]])
    np.testing.assert_allclose(times - times[0], np.arange(600), atol=1e-4)


def rows_in_file(path, field: str) -> np.ndarray:
    """The values of every dataset named ``field`` in the HDF5 file at ``path``, in order."""
    import h5py

    with h5py.File(path, "r", swmr=True) as f:
        found = []
        f.visititems(lambda name, item: found.append(item[()]) if name.endswith(field) else None)
    return np.concatenate(found) if found else np.array([])


def test_a_spectrum_is_read_once_with_its_dc_level(bench, clock):
    channel, sim, RE, docs = bench
    backend = channel.backend
    geis = GEIS(bias=PLATING, amplitude=-0.1 * PLATING, f_max=1e5, f_min=1.0)
    end = backend.start(geis)
    clock.advance_to(end + 2.0)
    spectrum = backend.read_spectrum()
    assert backend.read_spectrum() is None
    truth = sim.cell.impedance(geis.frequencies(), noisy=False)
    z = spectrum["z_real"] + 1j * spectrum["z_imag"]
    assert np.median(np.abs(z - truth) / np.abs(truth)) < 0.02
    assert spectrum["I"] == pytest.approx(PLATING, rel=1e-5) and spectrum["Ewe"] < 0


# -- faults: retried on a fresh session, or the instrument given up on, naming it ------------------------


def test_a_technique_keeps_every_row_through_a_dropped_session(tmp_path, clock, cell):
    sleeps = []
    sim = SimEClib(clock, cell)
    backend = EClibBackend(EClib(sim), clock, address="10.0.0.7", sleep=sleeps.append)
    end = backend.start(CP(PLATING, 600.0, 1.0))
    clock.advance(300.5)
    sim.disconnect()
    clock.advance_to(end + 2.0)
    rows = backend.read_rows()
    assert backend.end_reason == "completed" and backend.reconnects == 1 and sleeps == [0.05]
    np.testing.assert_allclose(rows["time"] - rows["time"][0], np.arange(600), atol=1e-4)


def test_a_lost_channel_ends_its_technique_with_the_error_and_stop_says_what_still_stops_it(clock, cell):
    sleeps, ended = [], []
    sim = SimEClib(clock, cell)
    backend = EClibBackend(EClib(sim), clock, address="10.0.0.7", sleep=sleeps.append)
    backend.start(CP(PLATING, 3600.0, 1.0), on_done=lambda reason, failure=None: ended.append((reason, failure)))
    clock.advance(600.0)
    sim.fault = "no_reply"
    clock.advance(60.0)  # the next poll finds it gone
    (reason, failure), = ended
    assert reason == "instrument lost" and isinstance(failure, InstrumentLost)
    assert str(failure).startswith("potentiostat at 10.0.0.7, channel 1: reading data: no valid reply after 4 attempts")
    assert sleeps == [0.05, 0.1, 0.2] and not backend.running and sim.running
    with pytest.raises(InstrumentLost, match=r"opening the circuit: .*the technique it may be running within 2940 s"):
        backend.stop()
    sim.fault = None
    backend.stop()  # the link is back: the circuit is opened, the records of the outage read
    assert not sim.running and backend.failure is None
    rows = backend.read_rows()  # every second until the stop, 660 s in, the outage's included
    np.testing.assert_allclose(rows["time"] - rows["time"][0], np.arange(660), atol=1e-4)


def test_a_refusal_is_not_retried(clock, cell):
    sleeps = []
    sim = SimEClib(clock, cell)
    backend = EClibBackend(EClib(sim), clock, sleep=sleeps.append)
    sim.fault = "exception"
    with pytest.raises(InstrumentFault, match=r"potentiostat at USB0, channel 1: loading and .*-101"):
        backend.start(OCV(60.0))
    assert sleeps == [] and backend.failure is not None


def test_an_instrument_out_of_reach_is_reported_with_its_address(clock, cell):
    sim = SimEClib(clock, cell)
    sim.fault = "no_reply"
    with pytest.raises(InstrumentLost, match=r"potentiostat at 10\.0\.0\.7, channel 1: connecting: no valid .*-201"):
        EClibBackend(EClib(sim), clock, address="10.0.0.7", sleep=lambda seconds: None)
