"""Decoding EC-Lab data buffers, and the cost of polling a channel for them, side by side.

Two figures, measured in one run:
- decoding alone: full ``BL_GetData`` buffers (1000 words) of CP (200 records of 5 words), OCV
  (333 of 3) and a GEIS sweep (71 of 14), decoded by ``devices.biologic.data.decode``. Target
  (issue 3): at least 1,000,000 decoded points per second, vectorised.
- polling: ``DataReader.drain`` through the ctypes binding and the simulated library, on a channel
  whose memory holds a day of 1 s CP records (432 full buffers), per buffer; the decoding share is
  subtracted to give the overhead of the calls themselves. With the real DLL the transfer from the
  instrument adds to it (network or USB); the simulation of the day is not timed.

Run it with ``make bench`` or ``python tests/benchmarks/bench_eclib.py``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from devices.biologic import ecc, eclib
from devices.biologic.data import VMP300, DataReader, LAYOUTS, decode, width
from devices.biologic.eclib import EClib
from devices.biologic.techniques import CP
from devices.sim.cell import CellParameters, SimCell
from devices.sim.eclib import SimEClib
from labctl.core.clock import VirtualClock

TARGET_POINTS_PER_S = 1_000_000
REPEATS = 5_000
DAY = 86_400.0


def full_buffer(technique_id: int, process: int, rng: np.random.Generator):
    """Return a full buffer of random records of the technique's layout, and its TDataInfos."""
    cols = width(LAYOUTS[VMP300, technique_id, process])
    rows = eclib.BUFFER_WORDS // cols
    words = rng.random(rows * cols, dtype=np.float32).view(np.uint32)
    buffer = eclib.DataBuffer(*words.tolist())
    info = eclib.DataInfo(NbRows=rows, NbCols=cols, TechniqueID=technique_id, ProcessIndex=process)
    return buffer, info


def decoding_rate(technique_id: int, process: int) -> tuple[float, float]:
    """Return (points per second, seconds per buffer) decoding full buffers of one layout."""
    buffer, info = full_buffer(technique_id, process, np.random.default_rng(0))
    start = time.perf_counter()
    for _ in range(REPEATS):
        decode(buffer, info, 21e-6, VMP300)
    elapsed = time.perf_counter() - start
    return info.NbRows * REPEATS / elapsed, elapsed / REPEATS


def polling_cost() -> tuple[int, float]:
    """Return (buffers, seconds per buffer) draining a day of 1 s CP records through the binding."""
    clock = VirtualClock(start=1e9)
    params = CellParameters(surface="lithiophilic")
    cell = SimCell(params, lambda t: 303.15, lambda t: 5e6, np.random.default_rng(0), clock.now())
    lib = EClib(SimEClib(clock, cell))
    device_id, _ = lib.connect("USB0")
    lib.load_firmware(device_id, [0])
    ecc.load_sequence(lib, device_id, 0, [CP(-5.0 * params.electrode_area, DAY, 1.0)], ecc.Hardware())
    lib.start_channel(device_id, 0)
    clock.advance(DAY)
    lib.current_values(device_id, 0)  # the simulated instrument measures the day here, untimed
    reader = DataReader(lib, device_id, 0, eclib.BOARD_PREMIUM)
    start = time.perf_counter()
    frames, stopped = reader.drain()
    elapsed = time.perf_counter() - start
    assert stopped and sum(len(f) for f in frames) == int(DAY)
    return len(frames), elapsed / len(frames)


def report() -> str:
    lines = [f"{'full 1000-word buffers':<40} {'points/s':>12} {'us/buffer':>10}"]
    rates = {}
    for label, technique_id, process in [("CP (200 x 5 words)", 102, 0), ("OCV (333 x 3 words)", 100, 0),
                                         ("GEIS sweep (71 x 14 words)", 107, 1)]:
        rate, per_buffer = decoding_rate(technique_id, process)
        rates[label] = (rate, per_buffer)
        lines.append(f"{'decode ' + label:<40} {rate:>12,.0f} {per_buffer * 1e6:>10.1f}")
    buffers, per_buffer = polling_cost()
    decode_share = rates["CP (200 x 5 words)"][1]
    lines.append(f"{f'drain a CP day ({buffers} buffers), per buffer':<40} {200 / per_buffer:>12,.0f} "
                 f"{per_buffer * 1e6:>10.1f}")
    lines.append(f"{'polling overhead (drain - decode)':<40} {'':>12} {(per_buffer - decode_share) * 1e6:>10.1f}")
    lines.append(f"target: {TARGET_POINTS_PER_S:,} decoded points/s")
    slowest = min(rate for rate, _ in rates.values())
    assert slowest >= TARGET_POINTS_PER_S, f"decoding {slowest:,.0f} points/s is below the target"
    return "\n".join(lines)


@pytest.mark.benchmark
@pytest.mark.timeout(900)
def test_eclib_decoding_and_polling_benchmark():
    print("\n" + report())


if __name__ == "__main__":
    print(report())
