"""Labs with the instruments they have, each real or simulated on its own.

The "real" chamber and rig are servers speaking the real protocols on loopback (Modbus TCP, the
rig's line protocol; devices/sim/wire.py) in front of their simulators, on the test's virtual
clock: the lab reaches them at real addresses, through the same drivers a bench uses. The lab is
assembled on that clock (``labctl.lab.assemble``) so a soak of hours takes no wall time.
"""

import numpy as np
import pytest

from devices.errors import InstrumentLost
from devices.sim.cell import CellParameters
from devices.sim.chamber import SimChamber
from devices.sim.rig import SimRig
from devices.sim.wire import ModbusChamberServer, RigLineServer
from labctl.core.clock import VirtualClock
from labctl.config import ConfigErrors, experiment_roles, load_experiment, load_lab
from labctl.lab import assemble, build_lab
from labctl.session import make_run_engine
from plans import PLANS, condition_cell, plate, set_pressure, set_temperature

CELL = CellParameters(surface="lithiophilic")
UNIT = 7  # a controller at a Modbus unit id other than 1

POTENTIOSTAT_SIM = """\
  potentiostat:
    kind: biologic-sp200
    simulated: true
    address: sim
    current_limit: 10 mA
    voltage_window: [-10 V, 10 V]
"""
POTENTIOSTAT_REAL = """\
  potentiostat:
    kind: biologic-sp200
    address: 192.168.0.10
    library: C:/EC-Lab Development Package/lib/EClib64.dll
    current_limit: 10 mA
    voltage_window: [-10 V, 10 V]
"""
CHAMBER = """\
  chamber:
    kind: eurotherm-3200
    address: {chamber}
    unit: {unit}
    temperature_range: [-40 degC, 200 degC]
    safe_setpoint: 25 degC
    stability_band: 0.5 K
    stability_hold: 5 min
"""
RIG = """\
  rig:
    kind: mark10-rig
    address: {rig}
    area: 0.785 cm^2
    pressure_range: [0 MPa, 20 MPa]
"""


@pytest.fixture
def clock():
    return VirtualClock(start=1e9)


@pytest.fixture
def bench(clock):
    """The "real" chamber (Eurotherm 3200 at unit 7) and rig on loopback, with their simulators."""
    chamber_sim = SimChamber(clock, rng=np.random.default_rng(1))
    rig_sim = SimRig(clock, chamber_sim.history_or_now(chamber_sim.temperature), rng=np.random.default_rng(2))
    with ModbusChamberServer(chamber_sim, "eurotherm-3200", device_id=UNIT) as chamber, RigLineServer(rig_sim) as rig:
        yield {"chamber": chamber, "rig": rig, "chamber_sim": chamber_sim, "rig_sim": rig_sim}


def lab_file(tmp_path, bench, *sections, name="bench"):
    """Write and load a real lab file with ``sections``, at the loopback servers' addresses."""
    body = "".join(sections).format(chamber=bench["chamber"].address, rig=bench["rig"].address, unit=UNIT)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nsimulated: false\ninstruments:\n{body}")
    return load_lab(path)


def experiment_file(tmp_path, config, steps: str):
    """Write an experiment on ``config``'s lab file with the YAML ``steps``; return its path."""
    path = tmp_path / "experiment.yaml"
    path.write_text(f"name: on-the-bench\nlab: {config.path}\ncell: {{id: C1, kind: symmetric, surface: lithiophilic, "
                    f"thickness: 1 mm, electrode_diameter: 2 mm}}\nsteps:\n{steps}")
    return path


def started(config, clock, tmp_path, roles=None):
    lab = assemble(config, CELL, tmp_path, clock, config.simulates, roles=roles)
    return lab, make_run_engine(clock)


def test_a_chamber_only_real_lab_conditions_a_cell(tmp_path, bench, clock):
    config = lab_file(tmp_path, bench, CHAMBER)
    assert config.instruments.present() == ["chamber"] and not config.fully_simulated
    lab, RE = started(config, clock, tmp_path)
    assert (lab.potentiostat, lab.rig, lab.simulators) == (None, None, {})
    result = RE(condition_cell(lab.chamber, temperature=333.15, hold=600.0, test_temperature=303.15))
    assert result.exit_status == "success"
    assert bench["chamber_sim"].setpoint == pytest.approx(303.15)
    assert bench["chamber_sim"].temperature() == pytest.approx(303.15, abs=0.5)
    actions = lab.make_safe()
    assert [a.instrument for a in actions] == ["chamber"] and actions[0].ok
    assert bench["chamber_sim"].setpoint == pytest.approx(298.15)


def test_a_step_needing_an_instrument_the_lab_lacks_is_refused_naming_step_role_and_lab_file(tmp_path, bench):
    config = lab_file(tmp_path, bench, CHAMBER)
    experiment = experiment_file(tmp_path, config, """\
  - plan: set_temperature
    temperature: 30 degC
  - plan: plate
    current_density: 0.5 mA/cm^2
    max_duration: 1 h
""")
    with pytest.raises(ConfigErrors) as caught:
        load_experiment(experiment, lab=config)
    (error,) = caught.value.errors
    assert (error.line, error.field) == (7, "steps[1].plan")
    assert error.message == (f"step 2 (plate) needs the potentiostat, and the lab file {config.path} has no "
                             "instruments.potentiostat: add it there (real or simulated: true), or remove the step")


def test_a_real_chamber_and_rig_with_a_simulated_potentiostat_put_the_cell_in_their_readings(tmp_path, bench, clock):
    config = lab_file(tmp_path, bench, POTENTIOSTAT_SIM, CHAMBER, RIG)
    assert [config.simulates(r) for r in config.instruments.present()] == [True, False, False]
    lab, RE = started(config, clock, tmp_path)
    assert set(lab.simulators) == {"cell", "potentiostat"}, "only the potentiostat (and its cell) are simulated"
    RE(set_temperature(lab.chamber, temperature=313.15))
    RE(set_pressure(lab.rig, pressure=5e6))
    cell = lab.simulators["cell"]
    now = clock.now()
    # the simulated cell reads the real instruments, not simulators of its own
    assert cell._temperature(now) == pytest.approx(bench["chamber_sim"].temperature(), abs=0.2)
    assert cell._pressure(now) == pytest.approx(bench["rig_sim"].pressure(), rel=0.02)
    assert cell._temperature(now) == pytest.approx(313.15, abs=0.5) and cell._pressure(now) == pytest.approx(5e6, rel=0.05)
    result = RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=CELL.electrode_area,
                      geis_interval=1800.0, geis_f_min=10.0, max_duration=3600.0))
    assert result.exit_status == "success" and result.plan_result.startswith("time limit reached: 1.00 h")
    assert [a.instrument for a in lab.make_safe()] == ["potentiostat", "chamber", "rig"]


def test_a_real_lab_without_the_dll_runs_every_step_that_needs_no_potentiostat(tmp_path, bench, clock):
    config = lab_file(tmp_path, bench, POTENTIOSTAT_REAL, CHAMBER, RIG)
    path = experiment_file(tmp_path, config, """\
  - plan: condition_cell
    temperature: 60 degC
    hold: 10 min
    test_temperature: 30 degC
""")
    experiment = load_experiment(path, lab=config)
    roles = experiment_roles(experiment, PLANS)
    assert roles == {"chamber", "rig"}
    lab, RE = started(config, clock, tmp_path, roles=roles)
    assert lab.potentiostat is None, "the DLL is loaded only when the potentiostat is built"
    result = RE(condition_cell(lab.chamber, lab.rig, temperature=333.15, hold=600.0, test_temperature=303.15))
    assert result.exit_status == "success"
    with pytest.raises(InstrumentLost, match=r"potentiostat at 192.168.0.10: cannot load the EC-Lab library .*"
                                             r"set simulated: true under instruments.potentiostat"):
        started(config, clock, tmp_path)


def test_a_lab_with_any_real_instrument_runs_on_the_wall_clock(tmp_path, bench):
    from labctl.core.clock import WallClock

    config = lab_file(tmp_path, bench, POTENTIOSTAT_SIM, CHAMBER)
    lab = build_lab(config, CELL, tmp_path, VirtualClock(start=0.0))
    assert isinstance(lab.clock, WallClock) and lab.chamber.backend.link.device_id == UNIT
    lab.close()


def test_the_wired_simulated_chamber_answers_at_the_lab_files_unit_id(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("name: sim\nsimulated: true\ninstruments:\n" + CHAMBER.format(chamber="sim", unit=UNIT))
    config = load_lab(path)
    lab = build_lab(config, CELL, tmp_path)
    try:
        assert lab.chamber.backend.link.device_id == UNIT
        assert lab.chamber.backend.read_temperature() == pytest.approx(lab.simulators["chamber"].temperature(), abs=0.05)
    finally:
        lab.close()
