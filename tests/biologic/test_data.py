"""Data buffers: decoding words built here, per technique and board family, and draining without loss."""

import math
import struct

import numpy as np
import pytest

from devices.biologic import ecc, eclib
from devices.biologic.data import VMP3, VMP300, DataLayoutError, DataReader, decode, impedance
from devices.biologic.techniques import CP, GEIS, LOOP, OCV, CPLIMIT, Limit

TB = 21e-6  # s, CP's time base on a VMP-300 board


def word(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def time_words(seconds: float, timebase: float) -> list[int]:
    ticks = round(seconds / timebase)
    return [ticks >> 32, ticks & 0xFFFFFFFF]


def buffer_of(records, technique_id, process=0, start=0.0):
    flat = [w for record in records for w in record]
    buffer = eclib.DataBuffer(*flat)
    info = eclib.DataInfo(NbRows=len(records), NbCols=len(records[0]), TechniqueID=technique_id,
                          ProcessIndex=process, StartTime=start)
    return buffer, info


def test_cp_records_decode_time_ewe_current_and_cycle():
    # 2e5 s at 21 us is 9.5e9 ticks: past 2^32, so the high word matters.
    records = [[*time_words(t, np.float32(TB)), word(e), word(i), c]
               for t, e, i, c in [(1.0, -0.052, -1.5708e-4, 0), (200000.0, 0.731, 2e-3, 3)]]
    frame = decode(*buffer_of(records, 102, start=12.5), timebase=np.float32(TB), family=VMP300)
    assert records[1][0] == 2  # the high word is in use
    np.testing.assert_allclose(frame.columns["time"], [13.5, 200012.5], atol=TB)
    np.testing.assert_allclose(frame.columns["Ewe"], [-0.052, 0.731], rtol=1e-7)
    np.testing.assert_allclose(frame.columns["I"], [-1.5708e-4, 2e-3], rtol=1e-7)
    assert frame.columns["cycle"].tolist() == [0, 3] and len(frame) == 2


@pytest.mark.parametrize("technique_id", [101, 155, 157])  # CA, CPLIMIT, CALIMIT share CP's layout
def test_limit_and_voltage_techniques_use_the_cp_layout(technique_id):
    frame = decode(*buffer_of([[0, 1000, word(0.1), word(3e-6), 1]], technique_id), timebase=1e-3, family=VMP300)
    assert frame.columns["time"][0] == pytest.approx(1.0) and frame.columns["I"][0] == pytest.approx(3e-6)


def test_ocv_has_three_words_on_vmp300_and_four_on_vmp3():
    frame = decode(*buffer_of([[0, 50, word(0.003)]], 100), timebase=20e-6, family=VMP300)
    assert frame.columns["time"][0] == pytest.approx(1e-3) and frame.columns["Ewe"][0] == pytest.approx(0.003)
    frame = decode(*buffer_of([[0, 50, word(0.003), word(-0.001)]], 100), timebase=20e-6, family=VMP3)
    assert frame.columns["Ece"][0] == pytest.approx(-0.001)
    with pytest.raises(DataLayoutError, match="3 words a record, the buffer 4"):
        decode(*buffer_of([[0, 50, word(0.003), word(-0.001)]], 100), timebase=20e-6, family=VMP300)


def test_eis_process_one_gives_the_complex_impedance():
    z = complex(120.0, -45.0)
    amplitude = 1e-5
    record = [word(1234.5), word(abs(z) * amplitude), word(amplitude), word(math.degrees(math.atan2(z.imag, z.real))),
              word(-0.05), word(-1.5708e-4), 0, 0, 0, 0, 0, 0, 0, word(3.25)]
    frame = decode(*buffer_of([record], 107, process=1), timebase=24e-6, family=VMP300)
    assert frame.columns["frequency"][0] == pytest.approx(1234.5)
    assert impedance(frame)[0] == pytest.approx(z, rel=1e-6)
    assert frame.columns["t"][0] == pytest.approx(3.25)
    vmp3 = decode(*buffer_of([record + [7]], 104, process=1), timebase=24e-6, family=VMP3)
    assert vmp3.columns["I_range"][0] == 7 and impedance(vmp3)[0] == pytest.approx(z, rel=1e-6)
    dc = decode(*buffer_of([[0, 1000, word(-0.05), word(-1.5e-4)]], 107, process=0), timebase=1e-3, family=VMP300)
    assert dc.columns["time"][0] == pytest.approx(1.0) and "cycle" not in dc.columns


def test_an_unknown_technique_or_process_is_refused():
    with pytest.raises(DataLayoutError, match="technique 103"):
        decode(*buffer_of([[0, 0, 0, 0, 0]], 103), timebase=1e-3, family=VMP300)  # CV: not decoded here
    with pytest.raises(DataLayoutError, match="process 2"):
        decode(*buffer_of([[0, 0, 0, 0]], 107, process=2), timebase=1e-3, family=VMP300)


def reader_for(connected):
    lib, device_id = connected
    return DataReader(lib, device_id, 0, eclib.BOARD_PREMIUM)


def test_drain_returns_every_record_across_full_buffers_and_linked_techniques(connected, clock, sim):
    lib, device_id = connected
    # 700 OCV rows (3 words: 333 a buffer), then 2 x 250 CP rows (5 words: 200 a buffer) with a LOOP.
    ecc.load_sequence(lib, device_id, 0, [OCV(700.0, 1.0), CP(1e-4, 250.0, 1.0), LOOP(1, 1)], ecc.Hardware())
    lib.start_channel(device_id, 0)
    clock.advance(1200.0 + 1)
    frames, stopped = reader_for(connected).drain()
    assert stopped and not sim.running
    sizes = [(f.technique_index, f.loop, len(f)) for f in frames]
    assert sizes == [(0, 0, 333), (0, 0, 333), (0, 0, 34), (1, 0, 200), (1, 0, 50), (1, 1, 200), (1, 1, 50)]
    times = np.concatenate([f.columns["time"] for f in frames])
    np.testing.assert_allclose(times, np.arange(1, 1201), atol=1e-4)  # every second, none lost or repeated
    assert reader_for(connected).drain() == ([], True)


def test_polling_while_running_loses_nothing_and_reports_running(connected, clock):
    lib, device_id = connected
    ecc.load_sequence(lib, device_id, 0, [CP(1e-4, 100.0, 1.0)], ecc.Hardware())
    lib.start_channel(device_id, 0)
    reader, collected = reader_for(connected), []
    for _ in range(7):
        clock.advance(17.0)
        frames, stopped = reader.drain()
        collected += frames
    assert stopped
    times = np.concatenate([f.columns["time"] for f in collected])
    np.testing.assert_allclose(times, np.arange(1, 101), atol=1e-4)


def test_an_instrument_limit_ends_the_step_at_the_sample_that_crossed_it(connected, clock):
    lib, device_id = connected
    technique = CPLIMIT(-0.005, 600.0, (Limit("Ewe", False, -2.0),), 1.0, "stop")  # 5 mA through kiloohms
    ecc.load_sequence(lib, device_id, 0, [technique], ecc.Hardware(voltage_window=(-2.0, 2.0)))
    lib.start_channel(device_id, 0)
    clock.advance(600.0)
    frames, stopped = reader_for(connected).drain()
    ewe = np.concatenate([f.columns["Ewe"] for f in frames])
    assert stopped and ewe[-1] <= -2.0 and np.all(ewe[:-1] > -2.0) and len(ewe) < 600


def test_a_geis_sweep_writes_dc_records_and_one_record_per_frequency(connected, clock, sim):
    lib, device_id = connected
    geis = GEIS(bias=-1.5708e-4, amplitude=1.5708e-5, f_max=1e5, f_min=1.0, points_per_decade=5)
    ecc.load_sequence(lib, device_id, 0, [geis], ecc.Hardware())
    lib.start_channel(device_id, 0)
    clock.advance(60.0)
    frames, stopped = reader_for(connected).drain()
    sweep = [f for f in frames if f.process == 1]
    assert stopped and sum(len(f) for f in sweep) == len(geis.frequencies())
    frequency = np.concatenate([f.columns["frequency"] for f in sweep])
    np.testing.assert_allclose(frequency, geis.frequencies(), rtol=1e-6)
    z = np.concatenate([impedance(f) for f in sweep])
    truth = sim.cell.impedance(geis.frequencies(), noisy=False)
    assert np.median(np.abs(z - truth) / np.abs(truth)) < 0.02
    dc = [f for f in frames if f.process == 0]
    assert np.allclose(np.concatenate([f.columns["I"] for f in dc]), -1.5708e-4, rtol=1e-6)


def test_a_vmp3_board_loads_suffixless_files_and_writes_its_own_layouts(clock, cell):
    from devices.biologic.eclib import EClib
    from devices.sim.eclib import SimEClib

    sim = SimEClib(clock, cell, board_type=eclib.BOARD_ESSENTIAL)
    lib = EClib(sim)
    device_id, _ = lib.connect("USB0")
    lib.load_firmware(device_id, [0])
    geis = GEIS(bias=0.0, amplitude=1e-5, f_max=1e4, f_min=10.0, points_per_decade=2)
    with pytest.raises(eclib.TechniqueError, match="INCOMPATIBLEECC"):
        ecc.load_sequence(lib, device_id, 0, [OCV(10.0)], ecc.Hardware())  # ocv4.ecc on a VMP3 board
    ecc.load_sequence(lib, device_id, 0, [OCV(10.0), geis], ecc.Hardware(board_type=eclib.BOARD_ESSENTIAL))
    lib.start_channel(device_id, 0)
    clock.advance(30.0)
    frames, stopped = DataReader(lib, device_id, 0, eclib.BOARD_ESSENTIAL).drain()
    ocv, sweep = frames[0], [f for f in frames if f.process == 1]
    assert stopped and ocv.technique_id == 100 and set(ocv.columns) == {"time", "Ewe", "Ece"}
    assert sum(len(f) for f in sweep) == 7 and np.all(np.concatenate([f.columns["I_range"] for f in sweep]) >= 5)


def test_p_boards_are_refused_rather_than_misread(connected):
    lib, device_id = connected
    with pytest.raises(DataLayoutError, match="IEEE singles"):
        DataReader(lib, device_id, 0, eclib.BOARD_PREMIUM_P)
