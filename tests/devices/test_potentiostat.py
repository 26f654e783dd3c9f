"""The potentiostat channel (flyer and impedance meter) over the EC-Lab stack and the simulated library."""

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest

from devices.biologic.channel import ROW_FIELDS, PotentiostatChannel
from devices.biologic.techniques import CA, CP, GEIS, OCV
from devices.sim.cell import CellParameters, SimCell
from devices.biologic.backend import EClibBackend
from devices.biologic.eclib import EClib
from devices.sim.eclib import SimEClib
from labctl.core.clock import VirtualClock
from labctl.session import make_run_engine

AREA = CellParameters().electrode_area
PLATING = -5.0 * AREA  # 0.5 mA/cm^2 = 5 A/m^2, plating on the WE


@pytest.fixture
def clock():
    return VirtualClock(start=1e9)


@pytest.fixture
def cell(clock):
    return SimCell(CellParameters(surface="lithiophilic"), lambda t: 303.15, lambda t: 5e6, np.random.default_rng(0), clock.now())


@pytest.fixture
def lab(tmp_path, clock, cell):
    backend = EClibBackend(EClib(SimEClib(clock, cell)), clock, voltage_window=(-2.0, 2.0), current_limit=0.01)
    channel = PotentiostatChannel(backend=backend, clock=clock, assets_dir=tmp_path, name="potentiostat")
    RE = make_run_engine(clock)
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return clock, channel, RE, docs


def fly(channel, technique, page=60.0):
    yield from bps.prepare(channel, technique, wait=True)
    yield from bps.kickoff(channel, wait=True)
    status = yield from bps.complete(channel, wait=False, group="done")
    while not status.done:
        yield from bps.sleep(page)
        yield from bps.collect(channel, name="potentiostat")
    yield from bps.wait(group="done")
    yield from bps.collect(channel, name="potentiostat")


def in_run(channel, *techniques):
    @bpp.stage_decorator([channel])
    @bpp.run_decorator()
    def inner():
        yield from bps.declare_stream(channel, name="potentiostat", collect=True)
        for technique in techniques:
            yield from fly(channel, technique)

    return inner()


def test_cp_rows_arrive_in_pages_not_events(lab):
    clock, channel, RE, docs = lab
    RE(in_run(channel, CP(PLATING, 900.0, 1.0)))
    names = [n for n, _ in docs]
    assert "event" not in names and "event_page" not in names
    datums = [d for n, d in docs if n == "stream_datum"]
    rows = sum(d["indices"]["stop"] - d["indices"]["start"] for d in datums) // len(ROW_FIELDS)
    assert rows == 900
    assert len(datums) == 15 * len(ROW_FIELDS)  # one page a minute, one datum per field


def test_cp_voltage_is_ohmic_and_charge_integrates_current(lab, cell):
    clock, channel, RE, docs = lab
    current = PLATING
    RE(in_run(channel, CP(current, 600.0, 1.0)))
    r = cell.resistances()
    expected = current * (r["bulk"] + r["interface"] + cell.params.lead_resistance)
    assert channel.ewe.get() == pytest.approx(expected, rel=0.02)
    assert channel.charge.get() == pytest.approx(current * 600.0, rel=1e-6)


def test_voltage_window_stops_the_technique(lab):
    clock, channel, RE, docs = lab
    RE(in_run(channel, CP(-0.005, 600.0, 1.0)))  # 5 mA through ~3 kohm: far past 2 V
    assert channel.end_reason.get() == "voltage limit"
    assert not channel.backend.running


def test_ocv_and_ca_techniques_run_in_sequence_in_one_stream(lab):
    clock, channel, RE, docs = lab
    start = clock.now()
    RE(in_run(channel, OCV(120.0, 10.0), CA(0.01, 120.0, 10.0)))
    assert clock.now() == pytest.approx(start + 240.0)
    assert channel.current.get() > 0


def test_impedance_reading_is_one_event_with_arrays(lab, cell):
    clock, channel, RE, docs = lab
    geis = GEIS(bias=PLATING, amplitude=-0.1 * PLATING)

    @bpp.run_decorator()
    def plan():
        yield from bps.prepare(channel.eis, geis, wait=True)
        status = yield from bps.trigger(channel.eis, group="eis")
        while not status.done:
            yield from bps.sleep(1.0)
        yield from bps.create(name="impedance")
        yield from bps.read(channel.eis)
        yield from bps.save()

    RE(plan())
    events = [d for n, d in docs if n == "event"]
    assert len(events) == 1
    data = events[0]["data"]
    assert len(data["potentiostat_eis_frequency"]) == len(geis.frequencies())
    z = np.asarray(data["potentiostat_eis_z_real"]) + 1j * np.asarray(data["potentiostat_eis_z_imag"])
    true = cell.impedance(geis.frequencies(), noisy=False)
    assert np.median(np.abs(z - true) / np.abs(true)) < 0.02
    assert data["potentiostat_eis_i_dc"] == pytest.approx(PLATING)


def test_stop_leaves_the_cell_at_open_circuit_and_keeps_the_rows(lab, rows_on_disk):
    clock, channel, RE, docs = lab

    def failing():
        yield from bps.prepare(channel, CP(PLATING, 3600.0, 1.0), wait=True)
        yield from bps.kickoff(channel, wait=True)
        yield from bps.sleep(600)
        yield from bps.collect(channel, name="potentiostat")
        raise RuntimeError("something else broke")

    @bpp.stage_decorator([channel])
    @bpp.run_decorator()
    def plan():
        yield from bps.declare_stream(channel, name="potentiostat", collect=True)
        yield from bpp.finalize_wrapper(failing(), bps.stop(channel))

    with pytest.raises(RuntimeError, match="something else broke"):
        RE(plan())
    assert not channel.backend.running and channel.backend.end_reason == "stopped"
    assert len(rows_on_disk(docs, "Ewe")) == 600
    stop = [d for n, d in docs if n == "stop"][0]
    assert stop["exit_status"] == "fail"
