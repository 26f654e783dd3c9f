"""Fault injection on the simulated lab: each instrument, each fault kind, at the instrument's own boundary.

The lab is configs/lab-sim.yaml: the potentiostat behind the EC-Lab binding over the simulated
library, the chamber's Eurotherm over Modbus TCP and the rig's line protocol, both on loopback. A
fault switch is turned on part-way through a plating run. A fault that passes (a timeout, a garbled
reply, a dropped connection) is retried on a fresh connection and plating carries on with the data
it would have had. A fault that lasts, or a refusal (a device exception, never retried), ends the
run as "fail" with a stop reason naming the instrument, its address and what happened, and the cell
at open circuit; ``lab.make_safe()``, which the experiment runner calls after the last step or a
failing one, then puts the chamber at its safe setpoint and leaves the rig holding (``on_finish``).

No test waits on the wall clock except for the loopback timeouts of the no-reply faults: the
drivers' backoff goes to a recorder (``Backoff``), which also ends a passing fault.
"""

import itertools
import re
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky.utils import FailedStatus, RunEngineInterrupted

from devices.errors import InstrumentLost
from devices.modbus import ModbusDeviceError
from devices.rig.protocol import RigRefused
from devices.sim.cell import CellParameters
from devices.sim.wire import ModbusChamberServer, RigLineServer
from labctl.core.clock import VirtualClock
from labctl.config import load_lab
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from plans import plate, set_pressure, set_temperature
from plans.stubs import NotAtOpenCircuit

LAB_FILE = Path(__file__).resolve().parents[1] / "configs" / "lab-sim.yaml"
CELL = CellParameters(surface="lithiophilic")  # plates steadily: nothing but the faults ends it early
TEST_TEMPERATURE, PRESSURE = 303.15, 5e6
FAULT_AT = 300.0  # s into plating: in the first constant-current segment
PLATING = {"current_density": 5.0, "electrode_area": CELL.electrode_area, "geis_interval": 600.0,
           "geis_f_min": 10.0, "max_duration": 1200.0, "page_interval": 120.0, "check_interval": 60.0}
INSTRUMENTS = ("potentiostat", "chamber", "rig")


class Backoff:
    """Stands in for ``time.sleep`` in the drivers: records each wait, and can end a fault after some."""

    def __init__(self):
        self.delays: list[float] = []
        self.switch, self.clears_after = None, None

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if len(self.delays) == self.clears_after:
            self.switch.fault = None


class Bench:
    """The wired simulated lab with the cell at 30 degC under 5 MPa, a RunEngine and its documents."""

    def __init__(self, tmp_path: Path, on_finish: str = "hold"):
        config = load_lab(LAB_FILE)
        rig = config.instruments.rig.model_copy(update={"on_finish": on_finish})
        config = config.model_copy(update={"instruments": config.instruments.model_copy(update={"rig": rig})})
        self.safe_setpoint = config.instruments.chamber.safe_setpoint
        assert self.safe_setpoint != TEST_TEMPERATURE, "else going there could not be seen"
        self.backoff = Backoff()
        self.lab = build_simulated_lab(config, CELL, tmp_path, VirtualClock(start=1e9), sleep=self.backoff)
        self.RE = make_run_engine(self.lab.clock)
        self.docs = []
        self.RE.subscribe(lambda name, doc: self.docs.append((name, doc)))
        self.RE(set_temperature(self.lab.chamber, temperature=TEST_TEMPERATURE))
        self.RE(set_pressure(self.lab.rig, pressure=PRESSURE))
        self.sims = self.lab.simulators

    def switch(self, instrument: str):
        """Return the fault switch of ``instrument``: the simulated library, or the server on loopback."""
        if instrument == "potentiostat":
            return self.sims["potentiostat"]
        kind = ModbusChamberServer if instrument == "chamber" else RigLineServer
        return next(server for server in self.lab.servers if isinstance(server, kind))

    def address(self, instrument: str) -> str:
        """Return where the instrument is reached, as its errors say."""
        return "sim, channel 1" if instrument == "potentiostat" else self.switch(instrument).address

    def during_plating(self, seconds: float, action) -> None:
        """Have ``action`` run ``seconds`` into the plating run started next."""
        self.lab.clock.call_at(self.lab.clock.now() + seconds, action)

    def fault(self, instrument: str, kind: str, clears_after: int | None = None) -> None:
        """Turn ``kind`` on at ``FAULT_AT``; the drivers' backoff turns it off after ``clears_after`` waits."""
        switch = self.switch(instrument)
        self.backoff.switch, self.backoff.clears_after = switch, clears_after
        self.during_plating(FAULT_AT, lambda: setattr(switch, "fault", kind))

    def plate(self, plan=None):
        return self.RE(plan or plate(self.lab.potentiostat, self.lab.chamber, self.lab.rig, **PLATING))

    def stop_document(self) -> dict:
        return [doc for name, doc in self.docs if name == "stop"][-1]

    def plating_rows(self, rows_on_disk) -> np.ndarray:
        """Return the time column the plating run wrote to its HDF5 file."""
        start = [doc for name, doc in self.docs if name == "start"][-1]["uid"]
        resources = [(n, d) for n, d in self.docs if n == "stream_resource" and d["run_start"] == start]
        return rows_on_disk(resources, "time")

    def environment(self) -> np.ndarray:
        """Return the plating run's environment readings: (chamber temperature, rig pressure) per event."""
        start = [doc for name, doc in self.docs if name == "start"][-1]["uid"]
        streams = {d["uid"]: d["name"] for n, d in self.docs if n == "descriptor" and d["run_start"] == start}
        events = [d["data"] for n, d in self.docs if n == "event" and streams.get(d["descriptor"]) == "environment"]
        return np.array([[e["chamber_temperature"], e["rig_pressure"]] for e in events])

    def assert_cell_at_open_circuit(self) -> None:
        assert not self.sims["potentiostat"].running, "the cell is left at open circuit"

    def assert_environment_kept(self) -> None:
        """The chamber kept the step's setpoint and the rig kept holding the step's pressure."""
        assert self.sims["chamber"].setpoint == pytest.approx(TEST_TEMPERATURE)
        assert self.sims["rig"].holding and self.sims["rig"].pressure() == pytest.approx(PRESSURE, abs=0.1e6)

    def assert_made_safe(self, actions) -> None:
        assert set(INSTRUMENTS) <= {a.instrument for a in actions} and all(a.ok for a in actions), actions
        self.assert_cell_at_open_circuit()
        assert self.sims["chamber"].setpoint == pytest.approx(self.safe_setpoint)
        assert self.sims["rig"].holding and self.sims["rig"].pressure() == pytest.approx(PRESSURE, abs=0.1e6)


@pytest.fixture
def bench(tmp_path):
    bench = Bench(tmp_path)
    yield bench
    bench.lab.close()


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory, rows_on_disk):
    """The plating run without faults, same seed: (row times, environment readings)."""
    bench = Bench(tmp_path_factory.mktemp("undisturbed"))
    try:
        assert bench.plate().exit_status == "success"
        return bench.plating_rows(rows_on_disk), bench.environment()
    finally:
        bench.lab.close()


def assert_plated_as_without_the_fault(bench, undisturbed, rows_on_disk):
    result = bench.stop_document()
    assert result["exit_status"] == "success" and result["reason"] == "time limit reached: 0.33 h"
    times, environment = undisturbed
    np.testing.assert_array_equal(bench.plating_rows(rows_on_disk), times)  # every row, none twice
    readings = bench.environment()
    assert readings.shape == environment.shape
    np.testing.assert_allclose(readings[:, 0], TEST_TEMPERATURE, atol=0.5)
    np.testing.assert_allclose(readings[:, 1], PRESSURE, atol=0.1e6)
    bench.assert_cell_at_open_circuit()


# -- faults that pass ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["no_reply", "garbled"])
@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_a_passing_fault_is_retried_and_plating_carries_on(bench, undisturbed, rows_on_disk, instrument, kind):
    bench.fault(instrument, kind, clears_after=2)
    bench.plate()
    assert bench.backoff.delays == [0.05, 0.1], "two failed attempts, backing off, then the third got through"
    assert bench.switch(instrument).fault is None
    assert_plated_as_without_the_fault(bench, undisturbed, rows_on_disk)


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_a_dropped_connection_is_reopened_and_plating_carries_on(bench, undisturbed, rows_on_disk, instrument):
    bench.during_plating(FAULT_AT, bench.switch(instrument).disconnect)
    bench.plate()
    assert bench.backoff.delays == [0.05]
    driver = {"potentiostat": bench.lab.potentiostat.backend, "chamber": bench.lab.chamber.backend.link,
              "rig": bench.lab.rig.backend}[instrument]
    assert driver.reconnects == 1
    assert_plated_as_without_the_fault(bench, undisturbed, rows_on_disk)


# -- faults that end the run --------------------------------------------------------------------------

LOST = {"potentiostat": "reading data: no valid reply after 4 attempts", "chamber": "no valid reply to the read",
        "rig": "no valid force reading after 4 attempts"}
REFUSED = {"potentiostat": (NotAtOpenCircuit, "ERR_INSTR_VMEERROR"),
           "chamber": (ModbusDeviceError, "exception 4 (server device failure)"),
           "rig": (RigRefused, "controller answered *10 (illegal command)")}


def assert_run_failed_naming(bench, instrument: str, what: str) -> str:
    stop = bench.stop_document()
    assert stop["exit_status"] == "fail"
    assert instrument in stop["reason"] and bench.address(instrument) in stop["reason"], stop["reason"]
    assert what in stop["reason"], stop["reason"]
    return stop["reason"]


@pytest.mark.parametrize("instrument", ["chamber", "rig"])
def test_a_lost_chamber_or_rig_ends_the_run_with_the_cell_at_open_circuit(bench, instrument):
    bench.fault(instrument, "no_reply")
    with pytest.raises(ConnectionError):
        bench.plate()
    assert_run_failed_naming(bench, instrument, LOST[instrument])
    assert bench.backoff.delays == [0.05, 0.1, 0.2]
    bench.assert_cell_at_open_circuit()
    bench.assert_environment_kept()  # the controllers regulate on their own

    actions = {a.instrument: a for a in bench.lab.make_safe()}
    assert actions["potentiostat"].ok
    assert not actions[instrument].ok and bench.address(instrument) in actions[instrument].error
    assert actions["chamber" if instrument == "rig" else "rig"].ok
    if instrument == "rig":
        assert bench.sims["chamber"].setpoint == pytest.approx(bench.safe_setpoint)
    bench.switch(instrument).fault = None  # back: the next make_safe reaches it
    bench.assert_made_safe(bench.lab.make_safe())


def lost_potentiostat(bench) -> str:
    """Lose the potentiostat for good during plating; return the run's stop reason."""
    bench.fault("potentiostat", "no_reply")
    with pytest.raises(NotAtOpenCircuit):
        bench.plate()
    reason = assert_run_failed_naming(bench, "potentiostat", LOST["potentiostat"])
    # One more attempt to open the circuit, which failed too: the reason says so and what still stops it.
    assert "opening the circuit: no valid reply after 1 attempt" in reason
    assert bench.sims["potentiostat"].running, "out of reach, the instrument is still plating"
    assert bench.backoff.delays == [0.05, 0.1, 0.2]
    return reason


def test_a_lost_potentiostat_ends_its_technique_by_itself_when_the_reason_says(bench):
    reason = lost_potentiostat(bench)
    left = float(re.search(r"the channel still ends the technique it may be running within (\d+) s", reason)[1])
    bench.lab.clock.advance(left - 1.0)
    assert bench.sims["potentiostat"].running
    bench.lab.clock.advance(2.0)
    bench.assert_cell_at_open_circuit()


def test_a_lost_potentiostat_is_stopped_once_it_answers_again(bench):
    lost_potentiostat(bench)
    actions = {a.instrument: a for a in bench.lab.make_safe()}
    assert not actions["potentiostat"].ok and "sim, channel 1" in actions["potentiostat"].error
    assert actions["chamber"].ok and actions["rig"].ok
    bench.switch("potentiostat").fault = None  # the link is back: the channel is reached and stopped
    bench.assert_made_safe(bench.lab.make_safe())
    assert bench.lab.potentiostat.backend.failure is None


STEPS = {"chamber": (set_temperature, "temperature", 313.15), "rig": (set_pressure, "pressure", 8e6)}


@pytest.mark.parametrize("instrument", ["chamber", "rig"])
def test_a_chamber_or_rig_lost_while_a_step_waits_on_it_ends_that_step_naming_it(bench, instrument):
    """The wait for stability polls on the clock; a lost controller fails it, and the run says which."""
    switch = bench.switch(instrument)
    bench.lab.clock.call_at(bench.lab.clock.now() + 10.0, lambda: setattr(switch, "fault", "no_reply"))
    plan, argument, value = STEPS[instrument]
    with pytest.raises((FailedStatus, InstrumentLost)):  # the wait fails first, or a reading beside it
        bench.RE(plan(getattr(bench.lab, instrument), **{argument: value}))
    assert_run_failed_naming(bench, instrument, "no valid")
    assert bench.backoff.delays[:3] == [0.05, 0.1, 0.2]


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_a_refusal_is_not_retried_and_ends_the_run(bench, instrument):
    error, text = REFUSED[instrument]
    bench.fault(instrument, "exception")
    with pytest.raises(error):
        bench.plate()
    assert_run_failed_naming(bench, instrument, text)
    assert bench.backoff.delays == []
    bench.switch(instrument).fault = None
    bench.assert_made_safe(bench.lab.make_safe())


def test_make_safe_releases_the_pressure_when_the_lab_file_says_so(tmp_path):
    bench = Bench(tmp_path, on_finish="release")
    try:
        actions = bench.lab.make_safe()
        assert all(a.ok for a in actions) and actions[-1].action.startswith("release the pressure")
        assert not bench.sims["rig"].holding
        bench.lab.clock.advance(60.0)
        assert bench.sims["rig"].pressure() < 0.05e6
        assert bench.sims["chamber"].setpoint == pytest.approx(bench.safe_setpoint)
    finally:
        bench.lab.close()


# -- the RunEngine's own stop, abort, pause and resume ---------------------------------------------------


def pausing_at_sleep(plan, n: int):
    """Return ``plan`` with a pause before its ``n``-th sleep, as RE.request_pause() from elsewhere would."""
    sleeps = itertools.count(1)

    def mutate(msg):
        if msg.command == "sleep" and next(sleeps) == n:
            return bpp.pchain(bps.pause(), bpp.single_gen(msg)), None
        return None, None

    return bpp.plan_mutator(plan, mutate)


def paused_plating(bench):
    with pytest.raises(RunEngineInterrupted):
        bench.plate(pausing_at_sleep(plate(bench.lab.potentiostat, bench.lab.chamber, bench.lab.rig, **PLATING), 8))
    assert bench.RE.state == "paused"


def test_pause_opens_the_circuit_keeps_the_environment_and_resume_plates_on(bench):
    paused_plating(bench)
    bench.assert_cell_at_open_circuit()
    bench.assert_environment_kept()
    charge = bench.lab.potentiostat.charge.get()
    bench.lab.clock.advance(600.0)  # time passes while paused: the channel stays stopped
    bench.assert_cell_at_open_circuit()

    result = bench.RE.resume()
    assert result.exit_status == "success" and result.plan_result == "time limit reached: 0.33 h"
    assert abs(bench.lab.potentiostat.charge.get()) > abs(charge), "plating went on after resuming"
    bench.assert_cell_at_open_circuit()
    bench.assert_environment_kept()


@pytest.mark.parametrize("call, exit_status", [("stop", "success"), ("abort", "abort"), ("halt", "abort")])
def test_stop_abort_and_halt_leave_the_cell_at_open_circuit(bench, call, exit_status):
    """From a pause, as a Ctrl-C gives: stop and abort run the plan's cleanup, halt skips it; none lets go."""
    paused_plating(bench)
    getattr(bench.RE, call)()
    assert bench.RE.state == "idle" and bench.stop_document()["exit_status"] == exit_status
    bench.assert_cell_at_open_circuit()
    bench.assert_environment_kept()


@pytest.mark.parametrize("instrument", ["chamber", "rig"])
def test_pausing_and_stopping_an_environment_step_lets_nothing_go(bench, instrument):
    """The RunEngine calls pause() and stop() on the chamber or rig a step sets: both keep regulating."""
    plan, argument, kept = STEPS[instrument]
    reached = bench.sims["chamber"].temperature if instrument == "chamber" else bench.sims["rig"].pressure
    with pytest.raises(RunEngineInterrupted):
        bench.RE(pausing_at_sleep(plan(getattr(bench.lab, instrument), **{argument: kept}, record_interval=30.0), 2))
    bench.lab.clock.advance(1800.0)  # paused: the controller carries on to the new setpoint
    assert reached() == pytest.approx(kept, rel=0.01)
    bench.RE.stop()
    assert bench.stop_document()["exit_status"] == "success"
    bench.lab.clock.advance(1800.0)
    assert reached() == pytest.approx(kept, rel=0.01)
    assert bench.sims["chamber"].setpoint == pytest.approx(313.15 if instrument == "chamber" else TEST_TEMPERATURE)
    assert bench.sims["rig"].holding
    assert bench.sims["rig"].target == pytest.approx(8e6 if instrument == "rig" else PRESSURE)
