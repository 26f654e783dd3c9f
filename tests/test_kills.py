"""`labctl run` killed (SIGKILL) at seeded random moments, then `labctl recover` (issue 13, point 3).

Each kill is of a real `labctl run` process, at a seeded random moment of a plating run with
1-hour pages (most kills land between pages, some before the first). The rows the process
would have measured are known from a reference run of the same experiment (same seed, same
data), and the kill's moment in session time from the run's last journalled reading (the plan
reads the channel every 5 s). After `labctl recover`, the catalog must hold every row up to at
most ~10 s of session time before that moment, equal to the reference's, and recover must say
how many seconds of samples each run lost.

The child process makes rows durable every DURABLE_INTERVAL (5 s) of session time, as on real
hardware; the simulated lab's default is 60 s (see devices/biologic/channel.py for why).
"""

import contextlib
import io
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import devices.biologic.channel as channel
from labctl.cli import main
from labctl.storage import Storage

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
KILLS = 5
MOST_LOST = 10.0  # s of session time
SEED = 20261201

EXPERIMENT = f"""\
name: kill-test
lab: {CONFIGS / "lab-sim.yaml"}
cell:
  id: LLZTO-KILL-1
  kind: symmetric
  surface: lithiophilic          # plates the whole 4 h without a short: every kill lands mid-plating
  thickness: 1.2 mm
  electrode_diameter: 2 mm
steps:
  - plan: set_pressure
    pressure: 5 MPa
  - plan: plate
    current_density: 0.5 mA/cm^2
    geis_interval: 3 h
    geis_f_min: 10 Hz
    page_interval: 60 min
    check_interval: 5 s
    max_duration: 4 h
"""

# `labctl run` with the real-hardware durable interval; it says when the plating run has started.
CHILD = """\
import sys
import devices.biologic.channel as channel
channel.SIMULATED_DURABLE_INTERVAL = channel.DURABLE_INTERVAL
from labctl.storage import Storage
journal = Storage.callback
def said(self, name, doc):
    journal(self, name, doc)
    if name == "start" and doc.get("plan_name") == "plate":
        print("plating", flush=True)
Storage.callback = said
from labctl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def plating_rows(storage, uid) -> dict[str, np.ndarray]:
    """The plating run's potentiostat rows (none if no row of it reached a file before the kill)."""
    stream = storage.catalog[uid]["potentiostat"].read()
    if "potentiostat_time" not in stream:
        return {"time": np.array([]), "Ewe": np.array([])}
    return {"time": stream["potentiostat_time"].values, "Ewe": stream["potentiostat_Ewe"].values}


def plate_uids(storage) -> list[str]:
    return [run["uid"] for run in storage.runs() if run["plan_name"] == "plate"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The plating rows of the experiment run to its end, relative to the run's start."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "kill.yaml").write_text(EXPERIMENT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(channel, "SIMULATED_DURABLE_INTERVAL", channel.DURABLE_INTERVAL)
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["run", str(folder / "kill.yaml"), "--data-dir", str(folder / "data")]) == 0, out.getvalue()
    with Storage.open(folder / "data") as storage:
        (uid,) = plate_uids(storage)
        rows = plating_rows(storage, uid)
        began = storage.catalog[uid].metadata["start"]["time"]
    return {"time": rows["time"] - began, "Ewe": rows["Ewe"]}


def kill_run(experiment: Path, data_dir: Path, after: float) -> None:
    """Start `labctl run`, SIGKILL it ``after`` wall seconds into its plating run."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, "run", str(experiment), "--data-dir", str(data_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:  # blocks until the plating run starts: no polling
            if line.strip() == "plating":
                break
        else:
            raise AssertionError(f"labctl run ended before plating: {child.stderr.read()[-2000:]}")
        threading.Event().wait(after)  # the kill's moment itself
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL, "the plating run ended before the kill: shorten the delays"


@pytest.mark.timeout(900)  # five `labctl run` processes and a reference run, on a loaded 2-core machine
def test_a_kill_at_seeded_random_moments_loses_seconds_not_a_page(tmp_path, reference):
    experiment = tmp_path / "kill.yaml"
    experiment.write_text(EXPERIMENT)
    data_dir = tmp_path / "data"
    delays = np.random.default_rng(SEED).uniform(0.5, 3.0, KILLS)  # wall seconds into plating: bounded
    for after in delays:
        kill_run(experiment, data_dir, float(after))

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["recover", "--data-dir", str(data_dir)]) == 0, out.getvalue()
    report = out.getvalue()
    with Storage.open(data_dir) as storage:
        uids = plate_uids(storage)
        assert len(uids) == KILLS
        for uid in uids:
            run = storage.catalog[uid]
            stop, began = run.metadata["stop"], run.metadata["start"]["time"]
            assert stop["exit_status"] == "fail" and stop["reason"].startswith("interrupted")
            last_reading = stop["time"] - began  # the journal's last document: the kill came within 5 s after
            rows = plating_rows(storage, uid)
            recovered = rows["time"] - began
            # What was recovered is what was measured, row for row ...
            np.testing.assert_allclose(recovered, reference["time"][: len(recovered)])
            np.testing.assert_array_equal(rows["Ewe"], reference["Ewe"][: len(recovered)])
            # ... and it reaches to within seconds of the kill.
            measured = reference["time"][reference["time"] <= last_reading]
            # (rows on disk may run past the last journalled document: nothing lost then)
            lost = max(0.0, measured[-1] - (recovered[-1] if len(recovered) else 0.0)) if len(measured) else 0.0
            assert lost <= MOST_LOST, f"run {uid[:8]}: {lost:.0f} s of samples lost ({len(recovered)} rows recovered)"
            print(f"killed at {last_reading:.0f} s of plating: {len(recovered)} rows recovered, {lost:.1f} s lost")
            line = next(line for line in report.splitlines() if uid in line)
            said = re.search(r"samples lost: (\d+) s", line)
            if len(recovered):
                assert said is not None and abs(float(said.group(1)) - lost) <= 1.0, line
            else:
                assert "samples lost: not determined" in line, line
