"""Guards: a plating step pauses or ends, as the experiment says, when its conditions leave their bands."""

import pytest

from devices.sim.cell import CellParameters
from labctl.core.clock import VirtualClock
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from plans import plate, set_pressure, set_temperature
from plans.guards import CONDITIONS, DECISIONS, Guard, Guards

CELL = CellParameters(surface="lithiophilic")
START = 1e9


@pytest.fixture
def lab(tmp_path, lab_config):
    lab = build_simulated_lab(lab_config, CELL, tmp_path, VirtualClock(start=START))
    RE = make_run_engine(lab.clock)
    RE(set_temperature(lab.chamber, temperature=303.15))
    RE(set_pressure(lab.rig, pressure=5e6))
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return lab, RE, docs


def drift(lab, offset, start, end):
    """Make the chamber read ``offset`` K off between ``start`` and ``end`` s after the plating starts."""
    sim, began = lab.simulators["chamber"], lab.clock.now()
    honest = sim.read_temperature
    sim.read_temperature = lambda: honest() + (offset if start <= lab.clock.now() - began < end else 0.0)


def plating(lab, RE, guards):
    return RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=CELL.electrode_area,
                    geis_interval=1800.0, geis_f_min=1.0, max_duration=7200.0, guards=guards))


def guard_events(docs):
    """The guards stream's events, each with ``when``: its time on the session clock."""
    descriptor = next(d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "guards")
    return [{**d, "when": d["timestamps"]["guards_decision"]} for n, d in docs
            if n == "event" and d["descriptor"] == descriptor]


def test_a_temperature_excursion_pauses_plating_at_open_circuit_until_back_in_band(lab):
    lab, RE, docs = lab
    drift(lab, 5.0, start=1800.0, end=3000.0)  # 20 min, 5 K too warm: a door left open
    began = lab.clock.now()
    result = plating(lab, RE, Guards(temperature=Guard("pause", band=2.0, resume_after=600.0)))
    assert result.exit_status == "success" and result.plan_result.startswith("time limit reached: 2.00 h")

    paused, resumed = guard_events(docs)
    assert [e["data"]["guards_decision"] for e in (paused, resumed)] == [DECISIONS["paused"], DECISIONS["resumed"]]
    assert paused["data"]["guards_condition"] == CONDITIONS["temperature"]
    assert paused["data"]["guards_value"] == pytest.approx(308.15, abs=0.5)
    assert 1800 <= paused["when"] - began <= 1800 + 60 + 600  # within a check (plus the GEIS at 30 min)
    assert 3000 + 600 - 60 <= resumed["when"] - began <= 3000 + 600 + 120  # 10 min back in band (checked each minute)
    # Plating time stays 2 h; the pause adds to the clock.
    assert lab.clock.now() - began > 7200 + (resumed["when"] - paused["when"]) * 0.9
    assert not lab.simulators["potentiostat"].running


def test_a_pressure_loss_ends_plating_when_the_guards_say_end(lab):
    lab, RE, docs = lab
    rig, began = lab.simulators["rig"], lab.clock.now()
    honest = rig.read_pressure
    rig.read_pressure = lambda: honest() * (0.5 if lab.clock.now() - began >= 2400 else 1.0)  # half the pressure
    result = plating(lab, RE, Guards(pressure=Guard("end", band=0.5e6)))
    (ended,) = guard_events(docs)
    assert ended["data"]["guards_decision"] == DECISIONS["ended"]
    assert result.plan_result.startswith("guard: pressure 2.")
    assert "more than 0.5 MPa from its setpoint 5.000 MPa; ended as the experiment's guards say" in result.plan_result
    assert 2400 <= ended["when"] - began <= 2400 + 120
    assert docs[-1][1]["reason"] == result.plan_result
    assert not lab.simulators["potentiostat"].running


def test_a_condition_that_never_comes_back_ends_the_step_after_give_up_after(lab):
    lab, RE, docs = lab
    drift(lab, 5.0, start=600.0, end=1e9)
    result = plating(lab, RE, Guards(temperature=Guard("pause", band=2.0, resume_after=600.0, give_up_after=3600.0)))
    assert "not back in band within 1 h, ended" in result.plan_result
    assert [e["data"]["guards_decision"] for e in guard_events(docs)] == [DECISIONS["paused"], DECISIONS["ended"]]
