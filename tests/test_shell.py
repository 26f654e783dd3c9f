"""The interactive session: the README's two-line recipe gives a working RunEngine, lab and catalog."""

from pathlib import Path

from labctl.shell import open_session

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


def test_exit_from_labctl_shell_closes_the_session_even_when_ipython_clears_its_namespace(tmp_path, monkeypatch, capsys):
    import IPython

    from labctl.cli import main

    def ipython_that_exits(argv, user_ns):  # what `exit` does: IPython resets its user namespace
        user_ns.clear()

    monkeypatch.setattr(IPython, "start_ipython", ipython_that_exits)
    assert main(["shell", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "potentiostat: open circuit: done" in out and "chamber: setpoint 25 degC (safe_setpoint): done" in out
