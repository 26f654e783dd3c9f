"""``plate`` end to end on the simulated lab, at current densities the old 10 mV rule could not see.

The sweep over densities, kinds and seeds is on the cell model (tests/analysis/test_short_detector.py);
these runs check that the plan feeds the detector the current, the open-circuit voltage and its
checks, and stops within one check interval of the simulator's true onset.
"""

import pytest

from devices.sim.cell import CellParameters
from labctl.core.clock import VirtualClock
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from plans import plate, set_pressure, set_temperature

AREA = CellParameters().electrode_area
CHECK = 60.0  # s, plate's default check_interval


def plate_until_stopped(lab_config, tmp_path, density: float, **cell):
    lab = build_simulated_lab(lab_config, CellParameters(**cell), tmp_path, VirtualClock(start=1e9))
    try:
        RE = make_run_engine(lab.clock)
        RE(set_temperature(lab.chamber, temperature=303.15))
        RE(set_pressure(lab.rig, pressure=5e6))
        reason = RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=density, electrode_area=AREA,
                          max_duration=5 * 3600.0)).plan_result
        return lab.simulators["cell"], reason, lab.clock.now()
    finally:
        lab.close()


def stopped_at(reason: str) -> float:
    from labctl.plots import short_time

    return short_time({"reason": reason})


@pytest.mark.parametrize("density, cell", [
    (20.0, {"surface": "lithiophobic"}),  # 2 mA/cm^2: a short at ~30 mV, which the 10 mV rule missed
    (50.0, {"surface": "lithiophilic"}),  # 5 mA/cm^2: soft shorts first, then the short
    (10.0, {"kind": "tracer"}),  # 1 mA/cm^2 on LiMg: the few mV of its open-circuit voltage come off
])
def test_plate_stops_within_one_check_of_the_short(lab_config, tmp_path, density, cell):
    sim, reason, _ = plate_until_stopped(lab_config, tmp_path, density, **cell)
    onset = sim.state.short_time
    assert onset is not None and reason.startswith("short circuit at")
    assert onset - 1 <= stopped_at(reason) <= onset + CHECK  # the reason is to the second
    if cell.get("surface") == "lithiophilic":
        assert any(start < onset for start, _, _ in sim.state.soft_shorts), "soft shorts came first, and did not stop it"


def test_plate_says_when_it_could_not_tell_a_short_from_the_cell(lab_config, tmp_path):
    """A lithiophilic cell at 4 mA/cm^2 and 60 degC: as its crack network nears the counter
    electrode its own resistance comes near a filament's; the stop reason says so."""
    lab = build_simulated_lab(lab_config, CellParameters(surface="lithiophilic"), tmp_path, VirtualClock(start=1e9))
    try:
        RE = make_run_engine(lab.clock)
        RE(set_temperature(lab.chamber, temperature=333.15))
        RE(set_pressure(lab.rig, pressure=5e6))
        reason = RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=40.0, electrode_area=AREA,
                          max_capacity=36_000.0)).plan_result
    finally:
        lab.close()
    assert reason.startswith("capacity reached: 1.000 mAh/cm^2; short detection not determined: the ")
    assert "came within 1.5 x the short band" in reason
