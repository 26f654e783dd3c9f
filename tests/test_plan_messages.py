"""The plans' control flow at the message level, on bluesky's RunEngineSimulator: no instrument, no
RunEngine; a scripted channel answers the messages on its own virtual clock."""

from __future__ import annotations

import numpy as np
import pytest
from bluesky.simulators import RunEngineSimulator
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.biologic.techniques import CP
from labctl.core.analysis import BULK_INTERFACE
from labctl.core.clock import VirtualClock
from plans import ccd_staircase, electronic_conductivity_step, plate, plate_strip, rest
from plans.guards import DECISIONS, Guard, Guards
from plans.potentiostat import Ended, timed_step

AREA = 3.14e-6  # m^2: a 2 mm electrode
CELL = [5.0, 3100.0, 11.2e-12, 1.0, 16000.0, 1.4e-7, 0.85]  # R0, bulk and interface arcs


class Field:
    """A readable that is only a name to the simulator (its value comes from the script)."""

    hints: dict = {}

    def __init__(self, name: str, parent=None):
        self.name, self.parent = name, parent


class ScriptedChannel:
    """Answers a plan's messages as a potentiostat channel would, on a virtual clock.

    Techniques run for their duration as the plan sleeps; ``voltage_limit_at`` (s after a kickoff)
    ends one at the voltage limit; ``pause_at`` ends one "stopped" and lets ``paused_for`` s pass,
    as a RunEngine pause (Ctrl-C) would; ``temperature(t)`` is what the chamber reads.
    """

    parent = None  # a root device, as bluesky's stage_wrapper looks

    def __init__(self, voltage_limit_at=None, pause_at=None, paused_for=0.0, temperature=lambda t: 303.15):
        self.name = "potentiostat"
        self.clock = VirtualClock(start=0.0)
        for key in ("ewe", "current", "charge", "end_reason", "ended_at"):
            setattr(self, key, Field(f"potentiostat_{key}", self))
        self.eis = Field("potentiostat_eis", self)
        self.chamber = Field("chamber")
        self.chamber.temperature, self.chamber.setpoint = Field("chamber_temperature"), Field("chamber_setpoint")
        self.voltage_limit_at, self.pause_at, self.paused_for = voltage_limit_at, pause_at, paused_for
        self.temperature = temperature
        self.technique, self.running, self.started, self.charged = None, False, 0.0, 0.0
        self.end, self.ended, self.kickoffs = "", 0.0, []
        self.simulator = self._simulator()

    def run(self, plan):
        """Return the plan's messages; its return value is in ``self.simulator.return_value``."""
        return self.simulator.simulate_plan(plan)

    def _simulator(self) -> RunEngineSimulator:
        sim = RunEngineSimulator()
        sim.add_handler("prepare", lambda msg: setattr(self, "technique", msg.args[0]), "potentiostat")
        sim.add_handler("kickoff", lambda msg: self._kickoff(), "potentiostat")
        sim.add_handler("complete", lambda msg: self, "potentiostat")  # the channel is its own status
        sim.add_handler("stop", lambda msg: self._finish("stopped"), "potentiostat")
        sim.add_handler("sleep", lambda msg: self._sleep(msg.args[0]))
        sim.add_handler("read", lambda msg: self._read(msg.obj))
        sim.add_handler("trigger", lambda msg: self._sweep(), "potentiostat_eis")
        return sim

    @property
    def done(self) -> bool:  # as the status of ``complete``
        return not self.running

    def _kickoff(self):
        self.running, self.started, self.end = True, self.clock.now(), ""
        self.kickoffs.append(self.technique)

    def _finish(self, end: str, at: float | None = None):
        if self.running:
            self.running, self.end, self.ended = False, end, self.clock.now() if at is None else at

    def _sleep(self, seconds: float):
        began = self.clock.now()
        self.clock.advance(seconds)
        if not self.running:
            return
        since = self.clock.now() - self.started
        for at, end in ((self.pause_at, "stopped"), (self.voltage_limit_at, "voltage limit"),
                        (self.technique.duration, "completed")):
            if at is not None and since >= at:
                self._charge(began, self.started + at)
                self._finish(end, self.started + at)
                if end == "stopped":
                    self.pause_at = None  # one pause, then time passes while paused
                    self.clock.advance(self.paused_for)
                return
        self._charge(began, self.clock.now())

    def _charge(self, began: float, until: float):
        if isinstance(self.technique, CP):
            self.charged += self.technique.current * max(until - began, 0.0)

    def _sweep(self):
        self.sweep_start = self.clock.now()
        return self  # done at once

    def _read(self, obj):
        now = self.clock.now()
        values = {"potentiostat_ewe": -0.05, "potentiostat_current": 1e-9 * (1 + now / 1000),  # never steady
                  "potentiostat_charge": self.charged,
                  "potentiostat_end_reason": self.end, "potentiostat_ended_at": self.ended,
                  "chamber_temperature": self.temperature(now), "chamber_setpoint": 303.15}
        if obj is self.eis:
            return self._spectrum()
        if obj is self.chamber:  # read into the environment stream with every page
            return {name: {"value": values[name], "timestamp": now} for name in ("chamber_temperature",
                                                                                   "chamber_setpoint")}
        if obj.name not in values:
            return None  # a computed stream (fits, guards, result): nothing to answer
        return {obj.name: {"value": values[obj.name], "timestamp": now}}

    def _spectrum(self) -> dict:
        f = np.logspace(np.log10(7e6), np.log10(1.0), 69)
        z = BULK_INTERFACE.impedance(CELL, f)
        fields = {"frequency": f, "z_real": z.real, "z_imag": z.imag, "sweep_start": self.sweep_start,
                  "ewe_dc": 0.0, "i_dc": 0.0}
        return {f"potentiostat_eis_{k}": {"value": v, "timestamp": self.sweep_start} for k, v in fields.items()}


def guarded_step(channel: ScriptedChannel, guards: Guards, duration: float = 1000.0):
    guards = guards.for_step(60.0)
    return timed_step(channel, lambda seconds: CP(-1e-4, seconds, 1.0), duration, [], sample_interval=1.0,
                      page_interval=300.0, check=lambda: guards.breach(channel.chamber, None), check_interval=60.0,
                      guards=guards, chamber=channel.chamber), guards


def decisions(messages, guards: Guards) -> list[int]:
    """The indices of the guards' decisions (events of the guards stream) among the messages."""
    return [i for i, m in enumerate(messages) if m.command == "read" and m.obj is guards.record]


def test_a_guard_pause_opens_the_circuit_then_the_step_runs_its_remaining_time():
    channel = ScriptedChannel(temperature=lambda t: 310.0 if 100 <= t < 400 else 303.15)
    step, guards = guarded_step(channel, Guards(temperature=Guard("pause", band=2.0, resume_after=120.0)))
    messages = channel.run(step)
    assert channel.simulator.return_value == Ended("completed", None, pytest.approx(1000.0))
    first, second = channel.kickoffs
    assert second.duration == pytest.approx(1000.0 - 120.0)  # breached at the check at 120 s
    kickoffs = [i for i, m in enumerate(messages) if m.command == "kickoff"]
    stops = [i for i, m in enumerate(messages) if m.command == "stop"]
    paused, resumed = decisions(messages, guards)
    assert kickoffs[0] < stops[0] < paused < resumed < kickoffs[1], "at open circuit from the breach to the resume"
    # The pause comes on top: from the breach until back in band (400 s) for resume_after, within a check.
    assert abs(channel.clock.now() - (1000.0 + (400 - 120) + 120)) <= 60


def test_a_guard_that_ends_the_step_says_so_and_starts_nothing_more():
    channel = ScriptedChannel(temperature=lambda t: 310.0 if t >= 250 else 303.15)
    step, guards = guarded_step(channel, Guards(temperature=Guard("end", band=2.0)))
    channel.run(step)
    end, stop, ran = channel.simulator.return_value
    assert stop.startswith("guard: temperature 310.000 K") and stop.endswith("ended as the experiment's guards say")
    assert len(channel.kickoffs) == 1 and ran == pytest.approx(300.0)  # the check after the breach
    assert guards.record.values["decision"] == DECISIONS["ended"]


@pytest.mark.parametrize("action", ["pause", "end"])
def test_compliance_pauses_at_open_circuit_or_ends_at_the_voltage_limit(action):
    channel = ScriptedChannel(voltage_limit_at=300.0)
    step, _ = guarded_step(channel, Guards(compliance=Guard(action, resume_after=60.0)))
    channel.run(step)
    end, stop, ran = channel.simulator.return_value
    if action == "end":
        assert end == "voltage limit" and "the potentiostat reached its voltage limit" in stop
        assert ran == pytest.approx(300.0) and len(channel.kickoffs) == 1
    else:  # each restart reaches the limit again after 300 s, until the step's time is used up
        assert (end, stop) == ("completed", None) and ran == pytest.approx(1000.0)
        assert [k.duration for k in channel.kickoffs] == pytest.approx([1000.0, 700.0, 400.0, 100.0])


def test_without_guards_the_voltage_limit_ends_the_step():
    channel = ScriptedChannel(voltage_limit_at=300.0)
    channel.run(timed_step(channel, lambda s: CP(-1e-4, s, 1.0), 1000.0, [], sample_interval=1.0,
                           page_interval=300.0))
    assert channel.simulator.return_value == Ended("voltage limit", None, pytest.approx(300.0))


TIMED = {  # each plan's timed steps, 1000 s of technique time in all (plating: 1000 s a half-cycle)
    "rest": lambda ch: rest(ch, duration=1000.0, sample_interval=1.0),
    "plate": lambda ch: plate(ch, current_density=5.0, electrode_area=AREA, max_duration=1000.0),
    "plate_strip": lambda ch: plate_strip(ch, current_density=5.0, half_cycle=500.0, electrode_area=AREA),
    "ccd_staircase": lambda ch: ccd_staircase(ch, start_density=5.0, density_step=5.0, max_density=5.0,
                                              step_capacity=2500.0, electrode_area=AREA),  # 500 s each way
    "electronic_conductivity_step": lambda ch: electronic_conductivity_step(
        ch, max_duration=1000.0, steady_window=2000.0, check_interval=60.0, electrode_area=AREA, thickness=1e-3),
}


@pytest.mark.parametrize("name", TIMED)
@settings(max_examples=5, deadline=None)
@given(pause_at=st.floats(1.0, 499.0), paused_for=st.floats(0.0, 1e6))
def test_a_pause_of_the_run_engine_is_not_counted_against_any_timed_step(name, pause_at, paused_for):
    channel = ScriptedChannel(pause_at=pause_at, paused_for=paused_for)
    messages = channel.run(TIMED[name](channel))
    durations = [k.duration for k in channel.kickoffs]
    # the paused technique starts again for the time it had left, whatever time passed while paused
    assert durations[:2] == pytest.approx([durations[0], durations[0] - pause_at])
    assert sum(durations) - durations[1] == pytest.approx(1000.0)  # every step ran its full time
    close = [m for m in messages if m.command == "close_run"][-1]
    assert close.kwargs["exit_status"] == "success"


def test_a_paused_rest_says_it_completed_its_time():
    channel = ScriptedChannel(pause_at=400.0, paused_for=3600.0)
    assert channel.run(rest(channel, duration=1000.0, sample_interval=1.0)) and channel.kickoffs[1].duration == 600
    assert channel.simulator.return_value == "rest completed after 16.6667 min"


HOUR = 3600.0


@settings(max_examples=10, deadline=None)
@given(capacity_hours=st.floats(0.5, 6.0), duration_hours=st.floats(0.5, 6.0))
def test_plating_stops_at_whichever_limit_comes_first(capacity_hours, duration_hours):
    density = 5.0  # A/m^2
    channel = ScriptedChannel()
    channel.run(plate(channel, current_density=density, electrode_area=AREA, geis_interval=HOUR,
                      max_capacity=density * capacity_hours * HOUR, max_duration=duration_hours * HOUR))
    reason = channel.simulator.return_value
    plating = sum(k.duration for k in channel.kickoffs)
    assert all(k.duration <= HOUR * (1 + 1e-9) for k in channel.kickoffs), "a spectrum every geis_interval"
    if capacity_hours < duration_hours - 1 / HOUR:
        assert reason.startswith("capacity reached") and plating == pytest.approx(capacity_hours * HOUR, abs=1.0)
    elif duration_hours < capacity_hours - 1 / HOUR:
        assert reason.startswith("time limit reached")
        assert plating == pytest.approx(duration_hours * HOUR, abs=1.0)


def test_a_guard_ends_plating_as_a_failed_run_with_the_guard_as_its_reason():
    channel = ScriptedChannel(temperature=lambda t: 310.0 if t >= 1800 else 303.15)
    messages = channel.run(plate(channel, channel.chamber, current_density=5.0, electrode_area=AREA,
                                 max_duration=4 * HOUR, guards=Guards(temperature=Guard("end", band=2.0))))
    close = [m for m in messages if m.command == "close_run"][-1]
    assert close.kwargs["exit_status"] == "fail"
    assert close.kwargs["reason"] == channel.simulator.return_value
    assert close.kwargs["reason"].startswith("guard: temperature 310.000 K")
