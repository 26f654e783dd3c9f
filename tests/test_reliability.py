"""Overnight reliability at the storage level: a data server outage mid-run, a killed process."""

import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted
from tiled.server import SimpleTiledServer

import labctl.storage.delivery
from devices.sim.cell import CellParameters
from labctl.cli import main
from labctl.core.clock import VirtualClock
from labctl.lab import build_simulated_lab
from labctl.session import HUNG_UP, SECOND_INTERRUPT, TERMINATED, make_run_engine
from labctl.storage import Storage
import plans
from plans import plate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CELL = CellParameters(surface="lithiophilic")  # plates for hours without shorting


def plating(storage, lab_config, watcher=None):
    """Plate for two simulated hours into ``storage``; return (start uid, wall seconds of the plan).

    Paced at 15 simulated minutes per wall second, so that the outage happens while it runs.
    """
    lab = build_simulated_lab(lab_config, CELL, storage.assets_dir, VirtualClock(start=1e9))
    RE = make_run_engine(lab.clock, pace=900.0)
    RE.subscribe(storage.callback)
    if watcher is not None:
        RE.subscribe(watcher)
    began = time.perf_counter()
    result = RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=CELL.electrode_area,
                      geis_interval=600.0, geis_f_min=1.0, page_interval=300.0, max_duration=7200.0))
    return result.run_start_uids[0], time.perf_counter() - began


class Outage:
    """Stops the embedded server at one impedance spectrum and starts it again at a later one.

    Both happen on threads of their own, as an outage would: the RunEngine never waits for them.
    """

    def __init__(self, storage, stop_at: int, restart_at: int):
        self.storage, self.stop_at, self.restart_at = storage, stop_at, restart_at
        self.spectra, self.descriptor, self.threads = 0, None, []
        self.while_behind = []  # documents the plan emitted while delivery was failing
        callback = storage.callback

        def counted(name, doc):
            if storage._delivery.behind:
                self.while_behind.append(name)
            callback(name, doc)

        storage.callback = counted
        url = urlparse(storage.uri)
        self.port, self.api_key = url.port, parse_qs(url.query)["api_key"][0]

    def __call__(self, name, doc):
        if name == "descriptor" and doc["name"] == "impedance":
            self.descriptor = doc["uid"]
        if name != "event" or doc["descriptor"] != self.descriptor:
            return
        self.spectra += 1
        if self.spectra == self.stop_at:
            self._start(self.storage.server.close)
        elif self.spectra == self.restart_at:
            self._start(self._restart)

    def _start(self, action):
        self.threads[-1:] and self.threads[-1].join()  # a restart waits for the stop to finish
        thread = threading.Thread(target=action)
        thread.start()
        self.threads.append(thread)

    def _restart(self):
        data_dir = self.storage.data_dir
        self.storage.server = SimpleTiledServer(directory=data_dir / "tiled", api_key=self.api_key, port=self.port,
                                                readable_storage=[data_dir / "assets"])

    def join(self):
        for thread in self.threads:
            thread.join()


def test_a_server_outage_mid_run_costs_the_plan_no_time_and_loses_no_document(tmp_path, lab_config, monkeypatch,
                                                                             caplog):
    # Fail fast and retry often, so the outage outlasts tiled's own retries and the test is quick.
    monkeypatch.setattr("tiled.client.utils.TILED_RETRY_ATTEMPTS", 1)
    monkeypatch.setattr(labctl.storage.delivery, "RETRY_AFTER", 0.1)
    monkeypatch.setattr(labctl.storage.delivery, "RETRY_MAX", 0.5)
    caplog.set_level(logging.INFO, logger="labctl.storage")
    with Storage.open(tmp_path, live=True) as storage:
        outage = Outage(storage, stop_at=2, restart_at=8)
        uid, seconds = plating(storage, lab_config, outage)
        outage.join()
        assert outage.spectra == 13
        assert storage.flush(timeout=60), storage.pending()
        assert f"storage: run {uid} is behind in the server" in caplog.text  # it did fall behind...
        assert f"storage: run {uid} caught up from the journal" in caplog.text  # ...and caught up
        assert storage.pending() == {}

        run = storage.catalog[uid]
        journal = storage.journal.read(uid)
        assert run.metadata["stop"]["exit_status"] == "success"
        assert run.metadata["stop"]["num_events"] == journal[-1][1]["num_events"]
        assert len(run["impedance"].read()["potentiostat_eis_z_real"]) == 13
        rows = sum(d["indices"]["stop"] - d["indices"]["start"] for n, d in journal
                   if n == "stream_datum" and d["stream_resource"] == journal_resource(journal, "potentiostat_Ewe"))
        assert len(run["potentiostat"].read()["potentiostat_Ewe"]) == rows == 7200
    # Load-independent (wall time is a benchmark's business): the plan went on while delivery was
    # failing. Had any plan step waited on delivery, nothing would have been emitted while the
    # run was behind; here every page and spectrum between the two moments was.
    print(f"plan wall time through the outage: {seconds:.2f} s, of which 8 s is the pace")
    assert outage.while_behind.count("event") >= 4 and outage.while_behind.count("stream_datum") >= 4, outage.while_behind


def journal_resource(journal, data_key):
    return next(d["uid"] for n, d in journal if n == "stream_resource" and d["data_key"] == data_key)
KILL_EXPERIMENT = """\
name: kill-test
lab: {lab}
cell:
  id: LLZTO-KILL-1
  kind: symmetric
  surface: lithiophilic
  thickness: 1.2 mm
  electrode_diameter: 2 mm
steps:
  - plan: plate
    current_density: 0.5 mA/cm^2
    geis_interval: 10 min
    geis_f_min: 1 Hz
    page_interval: 1 min
    max_duration: 3 h
"""


def test_sigkill_mid_plating_then_recover_gives_back_every_journalled_page(tmp_path, capsys):
    experiment = tmp_path / "kill.yaml"
    experiment.write_text(KILL_EXPERIMENT.format(lab=CONFIGS / "lab-sim.yaml"))
    data_dir = tmp_path / "data"
    # Unpaced, so stored in batches (tests/test_recover_live.py kills paced runs, stored live). A page a
    # simulated minute.
    command = [sys.executable, "-m", "labctl.cli", "run", str(experiment), "--data-dir", str(data_dir)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as run:
        pages = 0
        for line in run.stderr:  # one line per stored page (stderr is not a terminal)
            pages += "plated" in line
            if pages == 12:
                run.send_signal(signal.SIGKILL)
                break
    assert run.returncode == -signal.SIGKILL
    (journal_file,) = (data_dir / "journal").glob("*.jsonl")
    uid = journal_file.stem
    journalled = max(json.loads(line)["doc"]["indices"]["stop"] for line in journal_file.read_text().splitlines()
                     if '"name": "stream_datum"' in line)
    assert journalled >= 10 * 60  # the pages before the kill, each a minute at 1 Hz

    assert main(["runs", "--data-dir", str(data_dir)]) == 0
    assert "pending upload" in capsys.readouterr().out
    assert main(["recover", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "points of journalled pages lost: 0" in out and "1 of 1 runs" in out
    # The kill may land between a page's file write and its journal entry: those rows are kept too.
    after = re.search(rf"potentiostat: {journalled} points in \d+ journalled pages, 0 lost(, (\d+) written after)?", out)
    assert after, out
    with Storage.open(data_dir) as storage:
        run = storage.catalog[uid]
        stop = run.metadata["stop"]
        assert (stop["exit_status"], stop["reason"].split(":")[0]) == ("fail", "interrupted")
        ewe = run["potentiostat"].read()["potentiostat_Ewe"].values
        assert len(ewe) == journalled + int(after.group(2) or 0) and np.all(np.isfinite(ewe))
        assert storage.recover() == {}


def test_ctrl_c_in_labctl_run_pauses_then_resumes_then_aborts(tmp_path):
    experiment = tmp_path / "interrupt.yaml"
    experiment.write_text(KILL_EXPERIMENT.format(lab=CONFIGS / "lab-sim.yaml"))
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "labctl.cli", "run", str(experiment), "--data-dir", str(data_dir), "--pace", "1200"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as run:
        lines = iter(run.stderr)

        def read_until(text):
            return next(line for line in lines if text in line)

        for _ in range(5):
            read_until("plated")
        run.send_signal(signal.SIGINT)
        read_until("Press Enter to resume, Ctrl-C to abort")
        run.stdin.write("\n")
        run.stdin.flush()
        read_until("resuming")
        for _ in range(5):
            read_until("plated")  # plating goes on after the resume
        run.send_signal(signal.SIGINT)
        read_until("Press Enter to resume, Ctrl-C to abort")
        began = time.monotonic()
        run.send_signal(signal.SIGINT)
        read_until("aborting")
        out, _ = run.communicate(timeout=WAIT)
    print(f"Ctrl-C at the pause prompt: signal to process gone in {time.monotonic() - began:.2f} s")
    assert run.returncode == 1
    assert "plate" in out and "abort" in out and "aborted by the operator while paused" in out

    with Storage.open(data_dir) as storage:
        (summary,) = storage.runs()
        assert (summary["exit_status"], summary["reason"]) == ("abort", "aborted by the operator while paused (Ctrl-C)")
        ewe = storage.catalog[summary["uid"]]["potentiostat"].read()["potentiostat_Ewe"].values
        assert 8 * 60 <= len(ewe) < 3 * 3600  # pages from before and after the resume, cut short by the abort
        assert storage.pending() == {}


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_once_pauses_with_the_cell_at_open_circuit_twice_aborts(tmp_path, lab_config, presses):
    lab = build_simulated_lab(lab_config, CELL, tmp_path, VirtualClock(start=1e9))
    RE = make_run_engine(lab.clock)
    stops, pages = [], []

    def press_ctrl_c(name, doc):
        if name == "stop":
            stops.append(doc)
        if name == "stream_datum":
            pages.append(doc)
            if len(pages) == 8:  # mid-plating; each press is handled before the next is sent
                for press in range(presses):
                    os.kill(os.getpid(), signal.SIGINT)
                    while RE.interrupts == press:
                        pass

    RE.subscribe(press_ctrl_c)
    potentiostat = lab.simulators["potentiostat"]
    plan = plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=CELL.electrode_area,
                 page_interval=60.0, max_duration=7200.0)
    if presses == 1:
        with pytest.raises(RunEngineInterrupted):
            RE(plan)
        assert RE.state == "paused" and not potentiostat.running, "a paused plating step must not keep plating"
        assert lab.simulators["chamber"].setpoint == lab.chamber.setpoint.get()  # the chamber holds
        result = RE.resume()
        assert (result.exit_status, result.plan_result) == ("success", "time limit reached: 2.00 h")
    else:
        result = RE(plan)
        assert (result.exit_status, stops[-1]["reason"]) == ("abort", SECOND_INTERRUPT)
    assert RE.state == "idle" and not potentiostat.running
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # our handler is gone again


def test_a_sighup_delivered_to_another_thread_than_the_main_one_still_aborts_at_once(tmp_path, lab_config):
    """The kernel may hand a process's signal to any of its threads; Python runs the handler on the main one.

    The RunEngine's loop thread is sent SIGHUP directly; the plan (300 simulated minutes, paced to
    take 30 s) must end on the signal, not run to its time limit with the handler waiting for it.
    """
    lab = build_simulated_lab(lab_config, CELL, tmp_path, VirtualClock(start=1e9))
    RE = make_run_engine(lab.clock, pace=600)
    stops, pages = [], []

    def hang_up_on_the_loop_thread(name, doc):
        if name == "stop":
            stops.append(doc)
        if name == "stream_datum":
            pages.append(doc)
            if len(pages) == 2:
                signal.pthread_kill(threading.get_ident(), signal.SIGHUP)  # subscribers run on the loop's thread

    RE.subscribe(hang_up_on_the_loop_thread)
    assert threading.current_thread() is threading.main_thread()
    plan = plate(lab.potentiostat, lab.chamber, lab.rig, current_density=0.1, electrode_area=CELL.electrode_area,
                 page_interval=60.0, max_duration=300 * 60.0)
    result = RE(plan)
    assert (result.exit_status, stops[-1]["reason"]) == ("abort", HUNG_UP)
    assert len(pages) < 300 * 60 / 60 / 2, "the plan ran on well past the signal"
    assert not lab.simulators["potentiostat"].running


def test_a_full_disk_stops_plating_with_the_cell_at_open_circuit(tmp_path, lab_config, monkeypatch):
    with Storage.open(tmp_path, live=False) as storage:
        lab = build_simulated_lab(lab_config, CELL, storage.assets_dir, VirtualClock(start=1e9))
        RE = make_run_engine(lab.clock)
        RE.subscribe(storage.callback)
        written = storage.journal.write
        pages = []

        def filling_up(name, doc):
            pages.append(name == "stream_datum")
            if sum(pages) > 12:
                raise OSError(errno.ENOSPC, "No space left on device", str(storage.journal.directory))
            return written(name, doc)

        monkeypatch.setattr(storage.journal, "write", filling_up)
        with pytest.raises(OSError, match="No space left on device"):
            RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=CELL.electrode_area,
                     page_interval=60.0, max_duration=7200.0))
        assert RE.state == "idle" and not lab.simulators["potentiostat"].running
        monkeypatch.undo()
        storage.flush(timeout=10)
    with Storage.open(tmp_path) as storage:  # space freed: what was journalled is recoverable
        (outcome,) = storage.recover().values()
        assert outcome.delivered and outcome.points_lost == 0 and "interrupted" in outcome.message


def test_sigterm_to_labctl_run_aborts_with_the_run_closed_and_the_lab_made_safe(tmp_path):
    experiment = tmp_path / "term.yaml"
    experiment.write_text(KILL_EXPERIMENT.format(lab=CONFIGS / "lab-sim.yaml"))
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "labctl.cli", "run", str(experiment), "--data-dir", str(data_dir), "--pace", "1200"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        lines = iter(run.stderr)
        for _ in range(5):
            next(line for line in lines if "plated" in line)
        began = time.monotonic()
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=WAIT)
    print(f"SIGTERM: signal to process gone in {time.monotonic() - began:.2f} s")
    assert run.returncode == 1
    assert "abort" in out and "lab left safe: potentiostat: open circuit: done;" in out
    assert "chamber: setpoint 25 degC (safe_setpoint): done" in out
    with Storage.open(data_dir) as storage:
        (summary,) = storage.runs()
        assert (summary["exit_status"], summary["reason"]) == ("abort", TERMINATED)


# ---- every way out of `labctl run`: the run closed with its reason, the lab made safe, the process gone ----
WAIT = 90  # s: the bound on every wait for a marker line or the process's end (a loaded 2-core machine)


def labctl_run(tmp_path, hours: int = 3, **popen):
    """Start `labctl run` on the kill experiment (20 simulated minutes per second); return (process, data dir)."""
    experiment = tmp_path / "exits.yaml"
    experiment.write_text(KILL_EXPERIMENT.format(lab=CONFIGS / "lab-sim.yaml").replace("3 h", f"{hours} h"))
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "labctl.cli", "run", str(experiment), "--data-dir", str(data_dir), "--pace", "1200"]
    return subprocess.Popen(command, text=True, **popen), data_dir


def read_until(lines, text, seen=None):
    """Read lines until one holds ``text`` (the reader is bounded by the test's timeout)."""
    for line in lines:
        if seen is not None:
            seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r}: {seen}")


def stopped_run(data_dir):
    with Storage.open(data_dir) as storage:
        (summary,) = storage.runs()
        rows = len(storage.catalog[summary["uid"]]["potentiostat"].read()["potentiostat_Ewe"])
        return summary, rows, storage.pending()


def journalled_rows(data_dir):
    """The potentiostat rows the journal's stop document counts."""
    (journal_file,) = (data_dir / "journal").glob("*.jsonl")
    stop = json.loads(journal_file.read_text().splitlines()[-1])
    assert stop["name"] == "stop"
    return stop["doc"]["num_events"]["potentiostat"]


@pytest.mark.parametrize("way_out, reason", [
    ("SIGHUP", HUNG_UP),
    ("Ctrl-C twice, stdout closed", SECOND_INTERRUPT),  # `labctl run X | tee log`: Ctrl-C kills tee too
])
def test_each_signal_ends_labctl_run_with_the_run_closed_and_the_lab_made_safe(tmp_path, way_out, reason):
    run, data_dir = labctl_run(tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with run:
        lines, seen = iter(run.stderr), []
        for _ in range(5):
            read_until(lines, "plated", seen)
        began = time.monotonic()
        if way_out == "SIGHUP":
            run.send_signal(signal.SIGHUP)
            out, rest = run.communicate(timeout=WAIT)
            rest += out
        else:
            run.stdout.close()  # the reader of stdout is gone: every later write to it fails
            run.send_signal(signal.SIGINT)
            read_until(lines, "Ctrl-C: pausing", seen)
            run.send_signal(signal.SIGINT)
            rest = run.stderr.read()  # "lab left safe" comes here too, stdout being gone
            run.wait(timeout=WAIT)
        gone = time.monotonic() - began
    print(f"{way_out}: signal to process gone in {gone:.2f} s")
    assert run.returncode == 1, "".join(seen) + rest
    assert "lab left safe: potentiostat: open circuit: done;" in rest  # on stderr: stdout may be gone
    assert "chamber: setpoint 25 degC (safe_setpoint): done" in rest
    assert "Traceback" not in rest and "Exception ignored" not in rest
    summary, rows, pending = stopped_run(data_dir)
    assert (summary["exit_status"], summary["reason"]) == ("abort", reason)
    assert rows == journalled_rows(data_dir) >= 4 * 60  # every row measured, the partial page too
    assert pending == {}


def test_a_reader_that_closes_both_pipes_early_does_not_stop_the_run(tmp_path):
    """`labctl run X 2>&1 | head -3`: the run goes on to its end with nothing to say it to, and exits."""
    run, data_dir = labctl_run(tmp_path, hours=1, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    with run:
        for _ in range(3):
            run.stdout.readline()
        run.stdout.close()
        run.wait(timeout=WAIT)
    assert run.returncode == 0
    summary, rows, pending = stopped_run(data_dir)
    assert (summary["exit_status"], summary["reason"]) == ("success", "time limit reached: 1.00 h")
    assert rows == 3600 and pending == {}


@pytest.mark.parametrize("sample_interval", [0.001, 0.1, 1.0, 10.0])
def test_abort_while_paused_keeps_every_row_and_the_paused_channel_reads_open_circuit(tmp_path, lab_config,
                                                                                      sample_interval):
    page_interval = 300 * sample_interval  # 300 rows a page, whatever the rate
    (tmp_path / "data").mkdir()
    with Storage.open(tmp_path / "data", live=False) as storage:
        lab = build_simulated_lab(lab_config, CELL, storage.assets_dir, VirtualClock(start=1e9))
        RE = make_run_engine(lab.clock)
        RE.subscribe(storage.callback)
        seen, pressed_at = [], []

        def press_ctrl_c_mid_page(msg):  # two voltage checks after the third page: rows not yet collected
            if msg.command == "collect" or (msg.command == "read" and msg.obj is lab.potentiostat.ewe):
                seen.append(msg.command)
            # Once: the messages until the pause (the rest of this sample) leave `seen` as it is, and a
            # second SIGINT before the pause is the operator's abort.
            if not pressed_at and seen[-3:] == ["collect", "read", "read"] and seen.count("collect") == 3:
                pressed_at.append(lab.clock.now())
                os.kill(os.getpid(), signal.SIGINT)
                while RE.interrupts == 0:  # the main thread's handler has scheduled the pause (a person
                    pass                   # pressing Ctrl-C is far slower than this; the virtual clock is not)

        RE.msg_hook = press_ctrl_c_mid_page
        # The pause is handled between samples, not after a page
        with pytest.raises(RunEngineInterrupted):
            RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=CELL.electrode_area,
                     sample_interval=sample_interval, page_interval=page_interval, max_duration=20 * page_interval,
                     geis_interval=20 * page_interval))
        assert RE.state == "paused"
        reading = lab.potentiostat.read()
        assert reading["potentiostat_current"]["value"] == 0.0  # open circuit, not the plating current
        assert reading["potentiostat_ewe"]["value"] == lab.simulators["potentiostat"].cell.open_circuit_voltage()
        stopped_at = lab.potentiostat.ended_at.get()
        assert stopped_at - pressed_at[0] < page_interval  # before the next page: between samples
        result = RE.abort(reason="aborted in the test")
        assert result.exit_status == "abort" and not lab.simulators["potentiostat"].running
        assert storage.flush(timeout=60)
        uid = result.run_start_uids[0]
        times = storage.catalog[uid]["potentiostat"].read()["potentiostat_time"].values
        journal = storage.journal.read(uid)
        assert len(times) == journal[-1][1]["num_events"]["potentiostat"] > 3 * 300
        # every row up to the moment the circuit opened (float32 step)
        assert stopped_at - times[-1] < sample_interval * 1.001
    lab.close()


def test_a_paused_rest_resumes_for_the_time_it_has_left(tmp_path, lab_config):
    lab = build_simulated_lab(lab_config, CELL, tmp_path, VirtualClock(start=1e9))
    RE = make_run_engine(lab.clock)
    pages, resource = [], []

    def press_ctrl_c(name, doc):
        if name == "stream_resource" and doc["data_key"] == "potentiostat_Ewe":
            resource.append(doc["uid"])
        if name == "stream_datum" and doc["stream_resource"] in resource:  # rows of one field
            pages.append(doc["indices"]["stop"] - doc["indices"]["start"])
            if len(pages) == 4:
                os.kill(os.getpid(), signal.SIGINT)

    RE.subscribe(press_ctrl_c)
    with pytest.raises(RunEngineInterrupted):
        RE(plans.rest(lab.potentiostat, lab.chamber, lab.rig, duration=6 * 3600.0, sample_interval=10.0,
                      page_interval=600.0))
    paused_at = sum(pages)
    assert 0 < paused_at < 6 * 360
    result = RE.resume()
    assert (result.exit_status, result.plan_result) == ("success", "rest completed after 360 min")
    assert sum(pages) == 6 * 360  # a sample every 10 s for the whole 6 h, across the pause


def test_an_exception_in_a_subscriber_fails_the_step_with_its_reason_and_the_lab_made_safe(tmp_path):
    from labctl.config import load_experiment, load_lab
    from labctl.runner import ExperimentRunner

    experiment_file = tmp_path / "sub.yaml"
    experiment_file.write_text(KILL_EXPERIMENT.format(lab=CONFIGS / "lab-sim.yaml"))
    lab_config = load_lab(CONFIGS / "lab-sim.yaml")
    experiment = load_experiment(experiment_file, lab=lab_config)
    (tmp_path / "data").mkdir()
    with Storage.open(tmp_path / "data", live=False) as storage:
        runner = ExperimentRunner(experiment, lab_config, storage)
        seen = []

        def broken_display(name, doc):
            seen.append(name)
            if seen.count("stream_datum") == 5:
                raise RuntimeError("the display fell over")

        runner.RE.subscribe(broken_display)
        (outcome,) = runner.run()
        assert (outcome.exit_status, outcome.reason) == ("fail", "RuntimeError: the display fell over")
        assert all(a.ok for a in runner.safe_actions) and not runner.lab.simulators["potentiostat"].running
        assert storage.flush(timeout=60)
        (summary,) = storage.runs()
        assert (summary["exit_status"], summary["reason"]) == ("fail", "the display fell over")
        runner.lab.close()
