"""The interactive session: the README's two-line recipe gives a working RunEngine, lab and catalog."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import bluesky.plan_stubs as bps
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.core.errors import LITHIUM_MELTING_POINT
from labctl.locks import WRITER_LOCK
from labctl.safety import UnsafePlanCall
from labctl.session import HUNG_UP, TERMINATED
from labctl.shell import open_session, refusing_unsafe_calls, session_cell

LAB_FILE = Path(__file__).resolve().parents[1] / "configs" / "lab-sim.yaml"


def test_open_session_runs_plans_by_hand_into_the_catalog(tmp_path):
    ns = open_session(LAB_FILE, tmp_path / "data")
    RE, plans, storage = ns["RE"], ns["plans"], ns["storage"]
    try:
        RE(plans.set_temperature(ns["chamber"], temperature=303.15))
        RE(plans.set_pressure(ns["rig"], pressure=5e6))
        result = RE(plans.plate(ns["potentiostat"], ns["chamber"], ns["rig"], current_density=5.0,
                                electrode_area=3.14e-6, geis_interval=600, max_duration=600))
        assert storage.flush(timeout=60)
        run = ns["catalog"][result.run_start_uids[0]]
        assert run.metadata["stop"]["reason"] == "time limit reached: 0.17 h"
        assert run["potentiostat"].read()["potentiostat_Ewe"].size == 600
        assert run["impedance"].read()["potentiostat_eis_z_real"].shape[0] == 2
    finally:
        ns["lab"].close()
        storage.close()


def test_leaving_the_shell_with_a_plan_paused_closes_the_run_makes_the_lab_safe_and_closes(tmp_path):
    import os
    import signal

    import pytest
    from bluesky.utils import RunEngineInterrupted

    from labctl.shell import SHELL_LEFT_WHILE_PAUSED, close_session
    from labctl.storage import Storage

    ns = open_session(LAB_FILE, tmp_path / "data")
    RE, plans = ns["RE"], ns["plans"]
    pages = []

    def press_ctrl_c(name, doc):
        if name == "stream_datum":
            pages.append(doc)
            if len(pages) == 8:
                os.kill(os.getpid(), signal.SIGINT)

    RE.subscribe(press_ctrl_c)
    with pytest.raises(RunEngineInterrupted):
        RE(plans.plate(ns["potentiostat"], ns["chamber"], ns["rig"], current_density=5.0, electrode_area=3.14e-6,
                       sample_interval=0.1, page_interval=60, max_duration=7200))
    assert RE.state == "paused"
    actions = close_session(dict(ns))
    assert RE.state == "idle" and all(action.ok for action in actions)
    assert [a.instrument for a in actions][:1] == ["potentiostat"] and not ns["lab"].simulators["potentiostat"].running
    assert ns["lab"].servers == []  # the wire simulators are closed
    with Storage.open(tmp_path / "data") as storage:
        (summary,) = storage.runs()
        assert (summary["exit_status"], summary["reason"]) == ("abort", SHELL_LEFT_WHILE_PAUSED)



# ---- the rule set on calls by hand ----------------------------------------------------------------


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    ns = open_session(LAB_FILE, tmp_path_factory.mktemp("shell") / "data")
    yield ns
    ns["lab"].close()
    ns["storage"].close()


def first_message(session, plan, cell):
    """Drive a checked plan to its first message (the one the rule set looks at); close it."""
    checked = refusing_unsafe_calls(session["lab"], cell)(plan)
    try:
        return next(checked)
    finally:
        checked.close()


CELLS = {"lithium": session_cell(), "nickel": session_cell(cell={"id": "NI-1", "kind": "blocking"})}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(celsius=st.floats(-80.0, 260.0), cell=st.sampled_from(sorted(CELLS)),
       by=st.sampled_from(["plan", "set"]))
def test_a_chamber_setpoint_by_hand_passes_the_same_rules_as_a_file(session, celsius, cell, by):
    kelvin = celsius + 273.15
    chamber = session["chamber"]
    low, high = session["lab"].config.instruments.chamber.temperature_range
    allowed = low <= kelvin <= high and not (cell == "lithium" and kelvin >= LITHIUM_MELTING_POINT)
    plan = (session["plans"].set_temperature(chamber, temperature=kelvin) if by == "plan"
            else bps.mv(chamber, kelvin))
    if allowed:
        assert first_message(session, plan, CELLS[cell]).command == ("open_run" if by == "plan" else "set")
    else:
        with pytest.raises(UnsafePlanCall, match=r"temperature: .* degC") as refused:
            first_message(session, plan, CELLS[cell])
        assert "\n" not in str(refused.value)
        assert ("melt" in str(refused.value)) == (cell == "lithium" and low <= kelvin <= high
                                                   and kelvin >= LITHIUM_MELTING_POINT)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(megapascal=st.floats(-5.0, 40.0))
def test_a_rig_setpoint_by_hand_is_refused_outside_the_rigs_range(session, megapascal):
    low, high = session["lab"].config.instruments.rig.pressure_range
    plan = bps.mv(session["rig"], megapascal * 1e6)
    if low <= megapascal * 1e6 <= high:
        assert first_message(session, plan, CELLS["lithium"]).command == "set"
    else:
        with pytest.raises(UnsafePlanCall, match=r"^rig\.set: pressure: "):
            first_message(session, plan, CELLS["lithium"])


def test_a_refused_call_through_the_sessions_run_engine_touches_no_instrument(session):
    RE, chamber = session["RE"], session["chamber"]
    before = chamber.setpoint.get()
    with pytest.raises(UnsafePlanCall, match="190 degC would melt the cell's lithium"):
        RE(session["plans"].set_temperature(chamber, temperature=463.15))
    with pytest.raises(UnsafePlanCall, match="above the potentiostat's current limit"):  # 100 mA/cm^2 on 3 cm^2
        RE(session["plans"].plate(session["potentiostat"], chamber, session["rig"], current_density=1000.0,
                                  electrode_area=3e-4, max_duration=600))
    assert RE.state == "idle" and chamber.setpoint.get() == before
    assert not session["lab"].simulators["potentiostat"].running


# ---- leaving `labctl shell`: exit, SIGTERM, SIGHUP -------------------------------------------------
WAIT = 90  # s: the bound on every wait (a loaded 2-core machine)


def labctl_shell(data_dir):
    command = [sys.executable, "-m", "labctl.cli", "shell", "--data-dir", str(data_dir)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "MPLBACKEND": "agg"})


def type_line(shell, line):
    shell.stdin.write(line + "\n")
    shell.stdin.flush()


def wait_for(shell, text):
    """Read stdout until a line holds ``text``; return what was read."""
    seen = []
    for line in shell.stdout:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"no line with {text!r}: {seen}")


@pytest.mark.parametrize("way_out", ["exit", "SIGTERM", "SIGHUP"])
def test_leaving_an_idle_labctl_shell_makes_the_lab_safe_and_ends_the_process(tmp_path, way_out):
    with labctl_shell(tmp_path / "data") as shell:
        type_line(shell, "RE(plans.set_temperature(chamber, temperature=463.15))")  # refused in one line
        type_line(shell, "print('at the prompt', flush=True)")
        wait_for(shell, "at the prompt")
        if way_out == "exit":
            type_line(shell, "exit")
        else:
            shell.send_signal(getattr(signal, way_out))
        out, err = shell.communicate(timeout=WAIT)
    assert shell.returncode == (0 if way_out == "exit" else 1), err
    assert "Traceback" not in out + err
    refusal = [line for line in err.splitlines() if line.startswith("error: ")]
    assert refusal == ["error: set_temperature: temperature: 190 degC would melt the cell's lithium (Li melts at "
                       "180.5 degC): keep a cell with Li electrodes below 180.5 degC"]
    said = out if way_out == "exit" else err  # after a signal on stderr: the terminal may be gone
    assert "potentiostat: open circuit: done" in said and "chamber: setpoint 25 degC (safe_setpoint): done" in said
    if way_out != "exit":
        assert {"SIGTERM": TERMINATED, "SIGHUP": HUNG_UP}[way_out] + ": leaving labctl shell" in err
    assert not (tmp_path / "data" / WRITER_LOCK).exists()  # storage closed: its writer lock released


def test_sigterm_during_a_plan_in_labctl_shell_aborts_it_then_leaves_with_the_lab_safe(tmp_path):
    with labctl_shell(tmp_path / "data") as shell:
        type_line(shell, "RE.subscribe(lambda name, doc: print('resting', flush=True), 'descriptor')")
        type_line(shell, "RE(plans.rest(potentiostat, chamber, rig, duration=300 * 86400, sample_interval=10))")
        wait_for(shell, "resting")
        shell.send_signal(signal.SIGTERM)
        out, err = shell.communicate(timeout=WAIT)
    assert shell.returncode == 1, err
    assert "Traceback" not in out + err
    assert f"{TERMINATED}: leaving labctl shell" in err and "potentiostat: open circuit: done" in err
    (journal,) = (tmp_path / "data" / "journal").glob("*.jsonl")  # the run as journalled, closed
    stop = json.loads(journal.read_text().splitlines()[-1])
    assert stop["name"] == "stop" and (stop["doc"]["exit_status"], stop["doc"]["reason"]) == ("abort", TERMINATED)
