"""The protocol plans' own rules on the simulated lab: refusals before anything moves, ramps, repeats,
and what `labctl check` and `labctl plans` print."""

import re
from pathlib import Path

import pytest
from ophyd import Signal

from devices.sim.cell import CellParameters
from labctl.cli import main
from labctl.config import load_experiment, load_lab
from labctl.core.errors import ConfigErrors
from plans import PLANS, condition_cell, electronic_conductivity_step, peis, pressure_program
from plans.conditioning import _ramp
from test_config import case_header  # the corpus's header, read where the corpus is tested

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "config_cases"
AREA = CellParameters().electrode_area
# Where a real plan's own bound speaks before the lab's range does (the config tests use wider dummies).
REAL_PLAN_MESSAGES = {"exp-outside-chamber": "250 degC is out of range: allowed >= -40 and <= 200 degC"}


def test_conditioning_refuses_to_melt_lithium_before_the_chamber_moves(lab):
    lab, RE, docs = lab
    setpoint = lab.simulators["chamber"].setpoint
    with pytest.raises(ValueError, match="would melt the cell's lithium"):
        RE(condition_cell(lab.chamber, temperature=454.15, hold=0.0, test_temperature=303.15))
    assert docs == [] and lab.simulators["chamber"].setpoint == setpoint
    # without lithium (a Ni blocking cell) the same temperature is allowed
    assert next(condition_cell(lab.chamber, temperature=454.15, hold=0.0, test_temperature=303.15,
                               contains_lithium=False)).command == "open_run"


class LostRig(Signal):
    """A rig whose readings fail, to cut a plan short mid-way."""

    def read(self):
        raise RuntimeError("rig lost")


def test_conditioning_cut_short_sends_the_chamber_back_to_the_test_temperature(lab):
    lab, RE, docs = lab
    with pytest.raises(RuntimeError, match="rig lost"):
        RE(condition_cell(lab.chamber, LostRig(name="rig"), temperature=443.15, hold=7200.0, test_temperature=303.15))
    assert lab.simulators["chamber"].setpoint == pytest.approx(303.15)
    assert [d["exit_status"] for n, d in docs if n == "stop"] == ["fail"]


def test_a_pressure_ramp_steps_at_the_rate_and_release_ends_at_zero(lab):
    lab, RE, docs = lab
    assert _ramp(0.0, 5e6, 1e6 / 60, 30.0) == pytest.approx([0.5e6 * k for k in range(1, 11)])
    assert _ramp(2e6, 5e6, None, 30.0) == [5e6]
    RE(pressure_program(lab.rig, pressure=3e6, ramp_rate=1e6 / 60, hold=300.0, release=True, record_interval=30.0))
    pressures = [d["data"]["rig_pressure"] for n, d in docs if n == "event" and "rig_pressure" in d["data"]]
    assert max(pressures) == pytest.approx(3e6, abs=0.1e6)
    assert pressures[-1] == pytest.approx(0.0, abs=0.1e6)
    assert [d["reason"] for n, d in docs if n == "stop"] == ["held 3 MPa for 5 min, then released"]


def test_electronic_conductivity_refuses_a_lithium_cell(lab):
    lab, RE, docs = lab
    with pytest.raises(ValueError, match="needs a blocking"):
        RE(electronic_conductivity_step(lab.potentiostat, voltage=1.0, electrode_area=AREA, thickness=1.2e-3,
                                        cell_kind="symmetric"))
    assert docs == []


def test_repeated_peis_stores_every_spectrum_and_its_fit_and_leaves_open_circuit(lab):
    lab, RE, docs = lab
    reason = RE(peis(lab.potentiostat, lab.chamber, repeats=3, interval=600.0, f_min=10.0,
                     electrode_area=AREA)).plan_result
    descriptors = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    events = [descriptors[d["descriptor"]] for n, d in docs if n == "event"]
    assert events.count("impedance") == 3 and events.count("impedance_fit") == 3
    starts = [d["data"]["potentiostat_eis_sweep_start"] for n, d in docs
              if n == "event" and descriptors[d["descriptor"]] == "impedance"]
    assert starts[1] - starts[0] > 600.0
    assert reason.startswith("3 spectra")
    assert not lab.potentiostat.backend.running


def test_check_prints_an_estimated_duration_per_step_and_in_total(capsys):
    assert main(["check", str(ROOT / "configs" / "ccd-staircase.yaml")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"1\. set_temperature +2\d\.\d min +success", out), out  # when noise lets it settle
    assert re.search(r"3\. ccd_staircase +\d+\.\d (min|h) +success: critical current density", out), out
    assert re.search(r"estimated total: \d+\.\d (min|h)", out), out  # minutes below 2 h, then hours


def test_plans_lists_every_plan_with_units_and_defaults(capsys):
    assert main(["plans"]) == 0
    out = capsys.readouterr().out
    for name in PLANS:
        assert re.search(rf"^{name}: ", out, re.M), name
    assert re.search(r"current_density +> 0 and <= 100 mA/cm\^2 +required", out)
    assert re.search(r"temperatures +list of >= -40 and <= 200 degC +required", out)
    assert re.search(r"geis_interval +> 0 min +default 15 min", out)
    assert "(from the cell: electrode_area, thickness, cell_kind)" in out


@pytest.mark.parametrize("path", sorted(CASES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_invalid_file_fails_check_naming_the_problem_and_touches_nothing(path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an instrument (or its simulator) was built for an invalid file")

    monkeypatch.setattr("labctl.dryrun.build_simulated_lab", refuse)
    header = case_header(path)  # the corpus's own header: expect, line, and field and file when given
    expect = REAL_PLAN_MESSAGES.get(path.stem, header["expect"])
    if path.name.startswith("lab-"):
        argv = ["check", str(ROOT / "configs" / "plating-overnight.yaml"), "--lab", str(path)]
    elif re.search(rb"^lab: ", path.read_bytes(), re.MULTILINE):  # the case names its own lab file
        argv = ["check", str(path)]
    else:
        argv = ["check", str(path), "--lab", str(ROOT / "configs" / "lab-sim.yaml")]
    assert main(argv) == 3  # ExitCode.INVALID_FILE
    err = capsys.readouterr().err
    where = path.parent / header["file"] if "file" in header else path
    assert f"{where}:{header['line']}:" in err and expect in err, err


def test_a_dc_step_past_the_voltage_window_is_refused_at_its_line(tmp_path):
    lab = (ROOT / "configs" / "lab-sim.yaml").read_text()
    (tmp_path / "lab-sim.yaml").write_text(lab.replace("voltage_window: [-10 V, 10 V]", "voltage_window: [-2 V, 2 V]"))
    experiment = (ROOT / "configs" / "electronic-conductivity.yaml").read_text()
    (tmp_path / "step.yaml").write_text(experiment.replace("voltage: 1 V", "voltage: 3 V"))
    line = next(n for n, text in enumerate(experiment.splitlines(), 1) if "voltage: 1 V" in text)
    with pytest.raises(ConfigErrors) as caught:
        load_experiment(tmp_path / "step.yaml", lab=load_lab(tmp_path / "lab-sim.yaml"))
    (error,) = caught.value.errors
    assert error.line == line
    assert "3 V is outside the potentiostat's voltage window [-2 V, 2 V]" in str(error)
