"""Recovering a run stored live (a paced `labctl run`) that was SIGKILLed mid-way (issue 13).

A live run's documents reach the server as they come; a kill leaves a partial copy there, a
journal cut at any document (between two stream datums of one page, say) and HDF5 files holding
at least the journalled rows. `labctl recover` must leave the catalog holding exactly the
journalled run: each stream's rows once, all columns of a stream the same length, a stop
document, exit 0, and a second recover that changes nothing.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest

from devices.sim.cell import CellParameters
from labctl.cli import main
from labctl.core.clock import VirtualClock
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from labctl.storage import Storage
from plans import plate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WAIT = 90  # s: the bound on the wait for the process's end (a loaded 2-core machine)
EXPERIMENT = """\
name: live-kill
lab: {lab}
cell:
  id: LLZTO-LIVE-1
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
    max_duration: 1 h
"""


def journal_documents(path: Path) -> list[tuple[str, dict]]:
    """The readable documents of a journal (a last line cut short by the kill left out)."""
    documents = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        documents.append((entry["name"], entry["doc"]))
    return documents


def spectra_journalled(data_dir: Path) -> int:
    """Impedance spectra (events of the impedance stream) in the run's journal so far."""
    journals = list((data_dir / "journal").glob("*.jsonl"))
    if not journals:
        return 0
    documents = journal_documents(journals[0])
    impedance = {doc["uid"] for name, doc in documents if name == "descriptor" and doc["name"] == "impedance"}
    return sum(1 for name, doc in documents if name == "event" and doc["descriptor"] in impedance)


def kill_paced_run(tmp_path: Path, moment: str) -> Path:
    """Start a paced (live-stored) `labctl run`, SIGKILL it at ``moment``; return its data directory.

    The moment is read from the process's own output (one "plated" line per page), never from
    the wall clock: "first" just after the first line, "mid" after 25 pages, "spectrum" at the
    first page after the second spectrum reached the journal.
    """
    experiment = tmp_path / "live.yaml"
    experiment.write_text(EXPERIMENT.format(lab=CONFIGS / "lab-sim.yaml"))
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "labctl.cli", "run", str(experiment), "--data-dir", str(data_dir),
               "--pace", "1200"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as run:
        pages = 0
        for line in run.stderr:
            pages += "plated" in line
            if pages and (moment == "first" or (moment == "mid" and pages == 25)
                          or (moment == "spectrum" and spectra_journalled(data_dir) >= 2)):
                run.send_signal(signal.SIGKILL)
                break
        run.wait(timeout=WAIT)
    assert run.returncode == -signal.SIGKILL, f"the run ended before the kill ({moment}, {pages} pages)"
    return data_dir


def assert_catalog_holds_the_journal(storage: Storage, uid: str) -> None:
    """The catalog's copy of ``uid`` is its journal: rows once, columns of one length, a stop."""
    documents = journal_documents(storage.journal.path(uid))
    assert documents[-1][0] == "stop"
    run = storage.catalog[uid]
    assert run.metadata["stop"] == documents[-1][1]
    descriptors = {doc["uid"]: doc["name"] for name, doc in documents if name == "descriptor"}
    assert set(run) == set(descriptors.values())
    resources = {doc["uid"]: doc for name, doc in documents if name == "stream_resource"}
    for descriptor, stream in descriptors.items():
        data = run[stream].read()  # tiled refuses columns of different lengths ("Cannot specify dim0")
        lengths = {key: len(column) for key, column in data.data_vars.items()}
        assert len(set(lengths.values())) == 1, (stream, lengths)
        (rows,) = set(lengths.values())
        events = [doc for name, doc in documents if name == "event" and doc["descriptor"] == descriptor]
        if events:  # a stream of events: each journalled row once, in order
            assert [doc["seq_num"] for doc in events] == list(range(1, len(events) + 1))
            np.testing.assert_array_equal(data["time"].values, [doc["time"] for doc in events])
            continue
        datums = [doc for name, doc in documents if name == "stream_datum" and doc["descriptor"] == descriptor]
        fields = {doc["stream_resource"] for doc in datums}
        for field in fields:  # each field announced once per row, from row 0 to the stream's length
            announced = [(doc["indices"]["start"], doc["indices"]["stop"]) for doc in datums
                         if doc["stream_resource"] == field]
            assert [start for start, _ in announced] == [0] + [stop for _, stop in announced[:-1]]
            assert announced[-1][1] == rows
            resource = resources[field]
            with h5py.File(urlparse(resource["uri"]).path, "r", swmr=True) as file:
                on_disk = file[resource["parameters"]["dataset"]][:rows]
            np.testing.assert_array_equal(data[resource["data_key"]].values, on_disk)
        assert run.metadata["stop"]["num_events"][stream] == rows


@pytest.mark.parametrize("moment", ["first", "mid", "spectrum"])
def test_a_live_run_sigkilled_at_any_moment_is_recovered_consistently_and_once(tmp_path, moment, capsys):
    data_dir = kill_paced_run(tmp_path, moment)
    journals = list((data_dir / "journal").glob("*.jsonl"))
    journalled = {}  # rows of each potentiostat field the journal announced before the recovery
    for name, doc in journal_documents(journals[0]) if journals else []:
        if name == "stream_datum":
            journalled[doc["stream_resource"]] = doc["indices"]["stop"]

    assert main(["recover", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "points of journalled pages lost: 0" in out, out
    with Storage.open(data_dir) as storage:
        uids = [journal.stem for journal in storage.journal_dir.glob("*.jsonl")]
        assert len(uids) <= 1 and storage.pending() == {}
        for uid in uids:
            assert_catalog_holds_the_journal(storage, uid)
            stop = storage.catalog[uid].metadata["stop"]
            assert (stop["exit_status"], stop["reason"].split(":")[0]) == ("fail", "interrupted")
            rows = len(storage.catalog[uid]["potentiostat"].read()["potentiostat_Ewe"]) if journalled else 0
            assert rows >= max(journalled.values(), default=0)  # every journalled row, none lost
        before = {uid: storage.journal.path(uid).read_bytes() for uid in uids}
    if moment != "first":
        assert uids, "a kill after the first page left no journal"

    assert main(["runs", "--data-dir", str(data_dir)]) == 0
    listed = capsys.readouterr().out
    assert "pending upload" not in listed
    for uid in uids:
        assert uid[:8] in listed and "interrupted" in listed
        assert main(["show", uid[:8], "--data-dir", str(data_dir), "--out", str(tmp_path / "figures")]) == 0

    assert main(["recover", "--data-dir", str(data_dir)]) == 0  # a second recover: nothing to do
    assert "0 of 0 runs" in capsys.readouterr().out
    with Storage.open(data_dir) as storage:
        assert {uid: storage.journal.path(uid).read_bytes() for uid in uids} == before
        for uid in uids:
            assert_catalog_holds_the_journal(storage, uid)


# ---- the same, deterministically: the journal cut at every document of one page ---------------------
def test_a_journal_cut_between_the_stream_datums_or_resources_of_a_page_is_completed_to_one_length(tmp_path,
                                                                                                   lab_config):
    cell = CellParameters(surface="lithiophilic")
    source = tmp_path / "source"
    source.mkdir()
    with Storage.open(source, live=False) as storage:
        lab = build_simulated_lab(lab_config, cell, storage.assets_dir, VirtualClock(start=1e9))
        RE = make_run_engine(lab.clock)
        RE.subscribe(storage.callback)
        RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=cell.electrode_area,
                 geis_interval=600.0, geis_f_min=1.0, page_interval=60.0, max_duration=900.0))
        assert storage.flush(timeout=60)
    lab.close()
    (journal,) = (source / "journal").glob("*.jsonl")
    lines = journal.read_text().splitlines(keepends=True)
    names = [json.loads(line)["name"] for line in lines]
    # Every cut inside the first page (its stream resources and datums) and inside a later one.
    first = names.index("stream_resource")
    later = [i for i, name in enumerate(names) if name == "stream_datum"][12]
    cuts = list(range(first + 1, first + 8)) + list(range(later + 1, later + 4))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    uids = {}
    with Storage.open(data_dir) as storage:
        for cut in cuts:  # each cut a run of its own, with a copy of the files as the kill left them
            uid = str(uuid.uuid4())
            text = "".join(lines[:cut]).replace(journal.stem, uid)
            for path in (source / "assets").glob("*.h5"):
                copy = storage.assets_dir / f"{cut}-{path.name}"
                shutil.copy(path, copy)
                text = text.replace(str(path), str(copy))
            storage.journal.path(uid).write_text(text)
            storage.journal.mark_pending(uid, "killed")
            uids[uid] = cut
        outcomes = storage.recover()
        assert {uid for uid, outcome in outcomes.items() if outcome.delivered} == set(uids), outcomes
        for uid, cut in uids.items():
            assert_catalog_holds_the_journal(storage, uid)
            assert outcomes[uid].points_lost == 0, (cut, outcomes[uid].message)
        assert storage.recover() == {}
