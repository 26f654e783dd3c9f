"""``labctl doctor``: one line per instrument with a verdict, nothing written to any of them."""

import numpy as np
import pytest

from devices.sim.chamber import SimChamber
from devices.sim.eclib import SimEClib
from devices.sim.rig import SimRig
from devices.sim.wire import ChamberRegisters, ModbusChamberServer, RigLineServer
from labctl.cli import main
from labctl.core.clock import VirtualClock
from labctl.config import load_lab
from labctl.doctor import UNREACHABLE, diagnose

CONFIGS = __import__("pathlib").Path(__file__).resolve().parent.parent / "configs"
WRITES = {SimChamber: ["set_setpoint"], ChamberRegisters: ["write", "write_words"],
          SimRig: ["set_target", "hold", "release"],
          SimEClib: ["BL_LoadFirmware", "BL_LoadTechnique", "BL_UpdateParameters", "BL_StartChannel", "BL_StopChannel"]}


@pytest.fixture
def writes(monkeypatch):
    """Count every call that would change a simulated instrument, by class and method."""
    counted = []
    for cls, names in WRITES.items():
        for name in names:
            def counting(self, *args, _real=getattr(cls, name), _name=f"{cls.__name__}.{name}", **kwargs):
                counted.append(_name)
                return _real(self, *args, **kwargs)
            monkeypatch.setattr(cls, name, counting)
    return counted


def test_doctor_on_the_simulated_lab_reads_every_instrument_and_writes_nothing(capsys, writes):
    assert main(["doctor", str(CONFIGS / "lab-sim.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("lab 'lab-sim'") and len(lines) == 5
    by_role = {line.split()[0]: line for line in lines[1:]}
    assert list(by_role) == ["chamber", "rig", "potentiostat", "impedance_analyser"]
    assert all(line.split()[1] == "ok" for line in by_role.values())
    assert "eurotherm-3200, Modbus unit 1; PV 2" in by_role["chamber"] and "setpoint 25.00 degC" in by_role["chamber"]
    assert "force " in by_role["rig"] and "round trip" in by_role["rig"]
    assert "SP-200" in by_role["potentiostat"] and "channel stopped" in by_role["potentiostat"]
    assert "not the kernel (labctl run loads it)" in by_role["potentiostat"]
    assert writes == [], "the doctor wrote to an instrument"


@pytest.fixture
def bench():
    clock = VirtualClock(start=0.0)
    chamber_sim = SimChamber(clock, rng=np.random.default_rng(0))
    rig_sim = SimRig(clock, lambda t: 298.15, rng=np.random.default_rng(0))
    with ModbusChamberServer(chamber_sim, "eurotherm-3200", device_id=3) as chamber, RigLineServer(rig_sim) as rig:
        yield chamber, rig


def mixed_lab(tmp_path, chamber_address, rig_address, unit=3, pressure_high="20 MPa"):
    path = tmp_path / "bench.yaml"
    path.write_text(f"""\
name: bench
simulated: false
instruments:
  potentiostat: {{kind: biologic-sp200, simulated: true, address: sim, current_limit: 10 mA,
                 voltage_window: [-10 V, 10 V]}}
  chamber: {{kind: eurotherm-3200, address: "{chamber_address}", unit: {unit},
            temperature_range: [-40 degC, 200 degC], safe_setpoint: 25 degC}}
  rig: {{kind: mark10-rig, address: "{rig_address}", area: 0.785 cm^2, pressure_range: [0 MPa, {pressure_high}]}}
""")
    return load_lab(path)


def test_doctor_on_a_mixed_lab_reaches_the_real_instruments_at_their_addresses(tmp_path, bench, writes):
    chamber, rig = bench
    found = {d.role: d for d in diagnose(mixed_lab(tmp_path, chamber.address, rig.address))}
    assert [d.verdict for d in found.values()] == ["ok", "ok", "ok"]
    assert not found["chamber"].simulated and found["potentiostat"].simulated
    assert found["chamber"].where == chamber.address and "PV 25.0" in found["chamber"].readings
    assert found["rig"].latency is not None and found["rig"].latency > 0
    assert writes == []


def test_an_unreachable_instrument_is_named_and_the_exit_code_says_so(tmp_path, bench, capsys, writes):
    chamber, _ = bench
    config = mixed_lab(tmp_path, chamber.address, "socket://127.0.0.1:1")
    path = config.path
    assert main(["doctor", str(path)]) == 4
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["rig"].startswith(f"rig                {UNREACHABLE} real at socket://127.0.0.1:1: rig at "
                                   "socket://127.0.0.1:1: cannot open the line")
    assert lines["chamber"].split()[1] == "ok", "the others are still diagnosed"
    assert writes == []


def test_a_wrong_unit_id_is_reported_with_the_hint(tmp_path, bench):
    chamber, rig = bench
    found = {d.role: d for d in diagnose(mixed_lab(tmp_path, chamber.address, rig.address, unit=1))}
    assert found["chamber"].verdict == UNREACHABLE
    assert "exception 4 (server device failure); check the unit id (unit: in the lab file)" in found["chamber"].error


def test_limits_the_instrument_cannot_meet_are_a_warning(tmp_path, bench):
    chamber, rig = bench
    found = {d.role: d for d in diagnose(mixed_lab(tmp_path, chamber.address, rig.address, pressure_high="100 MPa"))}
    assert found["rig"].verdict == "warning"
    assert found["rig"].notes == ["the lab file allows 100 MPa, 7850 N on its area, above the frame's rated 5000 N"]


def test_the_write_counter_sees_the_writes_a_run_makes(tmp_path, writes):
    """The counter above is not blind: the drivers' writes through the same lab all reach it."""
    from devices.sim.cell import CellParameters
    from labctl.lab import build_simulated_lab

    lab = build_simulated_lab(load_lab(CONFIGS / "lab-sim.yaml"), CellParameters(), tmp_path, VirtualClock())
    try:
        lab.chamber.backend.set_setpoint(303.15)
        lab.rig.backend.hold(True)
        lab.potentiostat.stop()
    finally:
        lab.close()
    assert {"ChamberRegisters.write_words", "SimChamber.set_setpoint", "SimRig.hold"} <= set(writes)
    assert "SimEClib.BL_LoadFirmware" in writes  # the run's backend loads the kernel when it connects
