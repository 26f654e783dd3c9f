"""Guards in the other long plans: plate_strip and ccd_staircase pause or end as the experiment says."""

import re

import pytest

from plans import ccd_staircase, plate_strip
from plans.guards import CONDITIONS, DECISIONS, Guard, Guards
from tests.test_guards import CELL, drift, guard_events, lab  # noqa: F401  (the lab fixture)

AREA = CELL.electrode_area


def cycling(lab, RE, guards, density=10.0, check_interval=60.0):
    return RE(plate_strip(lab.potentiostat, lab.chamber, lab.rig, current_density=density, half_cycle=3600.0,
                          cycles=1, electrode_area=AREA, geis_f_min=10.0, check_interval=check_interval,
                          guards=guards))


def staircase(lab, RE, guards):
    # 0.1 mAh/cm^2 per step: 1 h at 0.1 mA/cm^2, then 30 min at 0.2 mA/cm^2
    return RE(ccd_staircase(lab.potentiostat, lab.chamber, lab.rig, start_density=1.0, density_step=1.0,
                            max_density=2.0, step_capacity=3600.0, electrode_area=AREA, guards=guards))


def test_a_temperature_excursion_pauses_a_half_cycle_which_then_runs_its_full_time(lab):
    lab, RE, docs = lab
    drift(lab, 5.0, start=1800.0, end=3000.0)
    began = lab.clock.now()
    result = cycling(lab, RE, Guards(temperature=Guard("pause", band=2.0, resume_after=600.0)))
    assert result.exit_status == "success" and result.plan_result.startswith("1 cycles of 2 h")
    paused, resumed = guard_events(docs)
    assert [e["data"]["guards_decision"] for e in (paused, resumed)] == [DECISIONS["paused"], DECISIONS["resumed"]]
    assert paused["data"]["guards_condition"] == CONDITIONS["temperature"]
    assert 1800 <= paused["when"] - began <= 1800 + 120
    pause = resumed["when"] - paused["when"]
    assert pause >= 600
    # both half-cycles got their full hour of current; the pause (at open circuit) comes on top
    assert lab.clock.now() - began >= 2 * 3600 + pause
    assert not lab.simulators["potentiostat"].running


# A/m^2: 0.05, 1 and 3 mA/cm^2 (this lithiophilic cell shorts within the hour at 10 mA/cm^2, as it should)
@pytest.mark.parametrize("density", [0.5, 10.0, 30.0])
def test_a_pressure_loss_ends_plate_strip_naming_the_guard_and_the_half_cycle(lab, density):
    lab, RE, docs = lab
    rig, began = lab.simulators["rig"], lab.clock.now()
    honest = rig.read_pressure
    rig.read_pressure = lambda: honest() * (0.5 if lab.clock.now() - began >= 1200 else 1.0)
    result = cycling(lab, RE, Guards(pressure=Guard("end", band=0.5e6)), density=density)
    assert result.plan_result.startswith("guard:"), result.plan_result
    (ended,) = guard_events(docs)
    assert ended["data"]["guards_decision"] == DECISIONS["ended"]
    assert result.plan_result.startswith("guard: pressure 2.")
    assert result.plan_result.endswith("ended as the experiment's guards say in half-cycle 1 of 2")
    assert 1200 <= ended["when"] - began <= 1200 + 120
    assert docs[-1][1]["reason"] == result.plan_result
    assert not lab.simulators["potentiostat"].running


def test_the_guards_passed_in_are_not_changed(lab):
    lab, RE, docs = lab
    guards = Guards(temperature=Guard("end", band=2.0))
    cycling(lab, RE, guards, check_interval=30.0)
    assert guards.check_interval == 60.0 and guards.paused_for == 0.0


def test_a_temperature_excursion_ends_the_staircase_with_the_guard_in_the_reason(lab):
    lab, RE, docs = lab
    drift(lab, -6.0, start=1200.0, end=1e9)
    began = lab.clock.now()
    result = staircase(lab, RE, Guards(temperature=Guard("end", band=2.0)))
    (ended,) = guard_events(docs)
    assert ended["data"]["guards_condition"] == CONDITIONS["temperature"]
    assert re.match(r"guard: temperature 29\d\.\d+ K is more than 2 K from its setpoint 303.150 K", result.plan_result)
    assert "ended as the experiment's guards say; no short up to" in result.plan_result
    assert 1200 <= ended["when"] - began <= 1200 + 20
    assert not lab.simulators["potentiostat"].running


def test_a_paused_staircase_step_resumes_and_plates_its_full_capacity(lab):
    lab, RE, docs = lab
    drift(lab, 5.0, start=1200.0, end=1800.0)
    began = lab.clock.now()
    result = staircase(lab, RE, Guards(temperature=Guard("pause", band=2.0, resume_after=300.0)))
    paused, resumed = guard_events(docs)
    assert [e["data"]["guards_decision"] for e in (paused, resumed)] == [DECISIONS["paused"], DECISIONS["resumed"]]
    assert result.exit_status == "success" and not result.plan_result.startswith("guard:")
    # 1 h at 0.1 mA/cm^2 and 30 min at 0.2 mA/cm^2 of current, the pause on top
    assert lab.clock.now() - began >= 5400 + (resumed["when"] - paused["when"])
