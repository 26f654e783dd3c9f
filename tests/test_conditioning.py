"""The chamber's soak and melting-point interlock as plans use them: set_temperature with a soak,
condition_cell's heat, soak, cool and settle, and the runner arming the interlock from the cell."""

from pathlib import Path

import numpy as np
import pytest

from labctl.config import load_experiment, load_lab
from labctl.dryrun import dry_run
from labctl.core.errors import LITHIUM_MELTING_POINT, LithiumWouldMelt
from plans import condition_cell, set_temperature

LAB_FILE = Path(__file__).resolve().parents[1] / "configs" / "lab-sim.yaml"
C30, C170 = 303.15, 443.15
BAND, HOLD = 0.5, 300.0  # the stub lab's stability band and hold (tests/conftest.py)


def environment(docs):
    """Return (session-clock time, chamber temperature) of every environment event, in order."""
    streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    events = [d for n, d in docs if n == "event" and streams[d["descriptor"]] == "environment"]
    return np.array([(e["timestamps"]["chamber_temperature"], e["data"]["chamber_temperature"]) for e in events]).T


def longest_within(times, temperatures, kelvin):
    """Return the longest unbroken stretch of readings within the band of ``kelvin``, s."""
    longest, since = 0.0, None
    for time, temperature in zip(times, temperatures):
        since = (since if since is not None else time) if abs(temperature - kelvin) <= BAND else None
        longest = max(longest, time - since) if since is not None else longest
    return longest


def test_set_temperature_soaks_once_stable_and_records_it(lab):
    lab, RE, docs = lab
    result = RE(set_temperature(lab.chamber, temperature=C30, soak=1800.0, record_interval=60.0))
    assert result.plan_result == "stable at 30.00 degC, soaked 0.5 h"
    (start,) = [d for n, d in docs if n == "start"]
    assert start["plan_args"]["soak"] == 1800.0
    times, temperatures = environment(docs)
    assert longest_within(times, temperatures, C30) >= HOLD + 1800.0 - 60.0  # one reading's worth of slack


def test_set_temperature_at_the_melting_point_is_refused_by_the_chamber_itself(lab):
    """Validation refuses it first; should a plan be called without it, the device still does."""
    lab, RE, docs = lab
    setpoint = lab.simulators["chamber"].setpoint
    with pytest.raises(LithiumWouldMelt):
        RE(set_temperature(lab.chamber, temperature=LITHIUM_MELTING_POINT))
    assert lab.simulators["chamber"].setpoint == setpoint
    assert [d["exit_status"] for n, d in docs if n == "stop"] == ["fail"]


def test_conditioning_heats_soaks_cools_and_ends_stable_at_the_test_temperature(lab):
    lab, RE, docs = lab
    result = RE(condition_cell(lab.chamber, temperature=C170, hold=2 * 3600.0, test_temperature=C30,
                               record_interval=60.0))
    assert result.plan_result == "held 2 h at 170.0 degC, stable at 30.00 degC"
    times, temperatures = environment(docs)
    assert longest_within(times, temperatures, C170) >= HOLD + 2 * 3600.0 - 60.0
    assert longest_within(times, temperatures, C30) >= HOLD - 60.0, "stable at the test temperature"
    assert temperatures[-1] == pytest.approx(C30, abs=BAND)
    chamber = lab.simulators["chamber"]
    assert chamber.setpoint == C30 and chamber.temperature() == pytest.approx(C30, abs=BAND)


def test_the_runner_disarms_the_interlock_only_for_a_cell_without_lithium(tmp_path):
    """A Ni|LLZTO|Ni cell may go to 190 degC; the dry run (as a run) tells the chamber so."""
    experiment = tmp_path / "hot-blocking.yaml"
    experiment.write_text(f"""\
name: hot-blocking
lab: {LAB_FILE}
cell:
  id: LLZTO-NI-09
  kind: blocking
  thickness: 1.2 mm
  electrode_diameter: 10 mm
steps:
  - plan: set_temperature
    temperature: 190 degC
    soak: 10 min
""")
    seen = {}
    outcomes = dry_run(load_experiment(experiment, lab=load_lab(LAB_FILE)), load_lab(LAB_FILE),
                       inspect=lambda lab: seen.update(armed=lab.chamber.contains_lithium.get()))
    assert [o.exit_status for o in outcomes] == ["success"], outcomes
    assert outcomes[0].reason == "stable at 190.00 degC, soaked 0.167 h"
    assert seen == {"armed": False}
