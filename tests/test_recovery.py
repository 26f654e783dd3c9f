"""Recover that never wedges, one writer per data directory and instrument, errors at the disk, data
directories that travel (issue 13 points 1, 2, 4)."""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from labctl.cli import main
from labctl.locks import LockHeld, instrument_locks, writer_lock
from labctl.recovery import consistent_documents, repair_journal
from labctl.storage import Storage

UID = "0b7e5d3c-1111-4222-8333-944455556666"


def live_holder(**fields):
    """A lock holder that is alive: pid 1 (init) on this host, heartbeat now."""
    return {"pid": 1, "host": socket.gethostname(), "role": "labctl run", "experiment": "other-night",
            "started": "2026-12-01T20:00:00+00:00", "heartbeat": time.time(), **fields}


def journal_lines(uid=UID, rows=(0, 5, 10)):
    """A small run: start, descriptor, stream resource, datums, an event, stop (as JSON lines)."""
    docs = [("start", {"uid": uid, "time": 1.0, "plan_name": "demo"}),
            ("descriptor", {"uid": "d1", "run_start": uid, "name": "primary", "time": 1.0,
                            "data_keys": {"x": {"source": "sim", "dtype": "number", "shape": []}},
                            "object_keys": {}, "configuration": {}, "hints": {}}),
            ("event", {"uid": "e1", "descriptor": "d1", "seq_num": 1, "time": 2.0, "data": {"x": 1.0},
                       "timestamps": {"x": 2.0}, "filled": {}}),
            ("event", {"uid": "e2", "descriptor": "d1", "seq_num": 2, "time": 3.0, "data": {"x": 2.0},
                       "timestamps": {"x": 3.0}, "filled": {}}),
            ("stop", {"uid": "s1", "run_start": uid, "time": 4.0, "exit_status": "success", "reason": "",
                      "num_events": {"primary": 2}})]
    return [json.dumps({"name": name, "doc": doc}) + "\n" for name, doc in docs]


# ---- point 1: recover never wedges ----------------------------------------------------------------
@pytest.mark.parametrize("content", ["", '{"name": "start", "doc": {"uid": "0b7e5d3c-11'], ids=["empty", "cut-short"])
def test_recover_sets_aside_a_journal_with_no_start_and_exits_0(tmp_path, content, capsys):
    journal = tmp_path / "journal"
    journal.mkdir(parents=True)
    (journal / f"{UID}.jsonl").write_text(content)
    (journal / f"{UID}.pending").write_text(json.dumps({"uid": UID, "reason": "not yet confirmed"}))
    assert main(["recover", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no start document" in out and "1 of 1 runs" in out
    assert not (journal / f"{UID}.jsonl").exists() and not (journal / f"{UID}.pending").exists()
    quarantined = [json.loads(line) for line in (journal / f"{UID}.quarantine").read_text().splitlines()]
    assert "".join(entry["text"] for entry in quarantined) == content  # every byte kept, set aside
    assert main(["recover", "--data-dir", str(tmp_path)]) == 0  # twice: nothing to do
    assert "0 of 0 runs" in capsys.readouterr().out
    assert main(["runs", "--data-dir", str(tmp_path)]) == 0
    assert "pending upload" not in capsys.readouterr().out


def test_garbage_lines_anywhere_are_set_aside_and_the_rest_of_the_run_is_recovered(tmp_path, capsys):
    journal = tmp_path / "journal"
    journal.mkdir(parents=True)
    lines = journal_lines()
    lines.insert(3, "\x00\x00garbage from a bad sector\n")  # between the two events
    lines.insert(1, '{"name": "event", "doc": \n')
    (journal / f"{UID}.jsonl").write_text("".join(lines))
    assert main(["recover", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 journal line(s) set aside" in out and "(line 2, 5)" in out and "1 of 1 runs" in out
    quarantined = [json.loads(line) for line in (journal / f"{UID}.quarantine").read_text().splitlines()]
    assert [entry["line"] for entry in quarantined] == [2, 5] and "garbage" in quarantined[1]["text"]
    with Storage.open(tmp_path) as storage:
        run = storage.catalog[UID]
        assert list(run["primary"].read()["x"].values) == [1.0, 2.0]
        assert run.metadata["stop"]["exit_status"] == "success"
        assert storage.recover() == {}  # idempotent: the journal was repaired


def test_consistency_sets_aside_what_does_not_fit_the_run():
    docs = [json.loads(line) for line in journal_lines()]
    docs = [(entry["name"], entry["doc"]) for entry in docs]
    premature_stop = ("stop", {"uid": "s0", "run_start": UID, "time": 2.5, "exit_status": "fail", "reason": "interrupted"})
    orphan = ("event", {"uid": "e9", "descriptor": "unknown", "seq_num": 1, "time": 2.0, "data": {}, "timestamps": {}})
    mixed = [docs[0], ("event", docs[2][1]), docs[1], docs[2], premature_stop, docs[2], orphan, docs[3], docs[4], docs[4]]
    kept, dropped = consistent_documents(mixed)
    assert [name for name, _ in kept] == ["start", "descriptor", "event", "event", "stop"]
    assert [why for _, why in dropped] == ["an event of an unknown descriptor", "a stop document followed by more of the run",
                                           "a repeated document", "an event of an unknown descriptor",
                                           "a repeated document"]


@pytest.mark.parametrize("repeated", [1, 2])
def test_an_event_repeating_a_seq_num_of_its_stream_is_set_aside(repeated):
    docs = [(entry["name"], entry["doc"]) for entry in map(json.loads, journal_lines())]
    event = docs[1 + repeated][1]
    replayed = ("event", {**event, "uid": f"replayed-{repeated}", "data": {"x": -1.0}})  # same row, new uid
    kept, dropped = consistent_documents([*docs[:4], replayed, docs[4]])
    assert [doc["uid"] for name, doc in kept if name == "event"] == ["e1", "e2"]
    assert dropped == [(4, "an event repeating a seq_num of its stream")]


def test_a_stream_datum_after_a_damaged_one_is_widened_over_the_gap():
    resource = {"uid": "r1", "data_key": "p_Ewe", "uri": "file://localhost/x.h5", "parameters": {"dataset": "/data/Ewe"}}
    datum = lambda n, a, b: ("stream_datum", {"uid": f"r1/{n}", "stream_resource": "r1", "descriptor": "d1",  # noqa: E731
                                              "indices": {"start": a, "stop": b}, "seq_nums": {"start": a + 1, "stop": b + 1}})
    docs = [("start", {"uid": UID, "time": 1.0}), ("descriptor", {"uid": "d1", "run_start": UID, "name": "p"}),
            ("stream_resource", resource), datum(0, 0, 5), datum(2, 10, 15), datum(3, 12, 20)]
    kept, dropped = consistent_documents(docs)
    assert kept[-1][1]["indices"] == {"start": 5, "stop": 15} and kept[-1][1]["seq_nums"] == {"start": 6, "stop": 16}
    assert dropped == [(5, "a stream datum overlapping an earlier one")]


def test_repair_is_a_no_op_on_a_sound_journal(tmp_path):
    path = tmp_path / f"{UID}.jsonl"
    path.write_text("".join(journal_lines()))
    before = path.read_bytes()
    repair = repair_journal(path)
    assert repair.set_aside == [] and path.read_bytes() == before and not path.with_suffix(".quarantine").exists()


def test_recover_rewrites_a_half_written_copy_in_the_server(tmp_path):
    journal = tmp_path / "journal"
    journal.mkdir(parents=True)
    lines = journal_lines()
    with Storage.open(tmp_path) as storage:  # the server got the first documents, then the process died
        client = storage._connect_writer()
        from bluesky_tiled_plugins import TiledWriter

        writer = TiledWriter(client)
        for line in lines[:3]:
            entry = json.loads(line)
            writer(entry["name"], entry["doc"])
        client.context.close()
    (journal / f"{UID}.jsonl").write_text("".join(lines))  # no pending marker (deleted by hand, say)
    with Storage.open(tmp_path) as storage:
        assert storage.catalog[UID].metadata.get("stop") is None
        assert storage.recover()[UID].delivered
        assert storage.catalog[UID].metadata["stop"]["exit_status"] == "success"
        assert list(storage.catalog[UID]["primary"].read()["x"].values) == [1.0, 2.0]
        assert storage.recover() == {}


# ---- point 2: one writer per data directory and per instrument -----------------------------------
def test_a_second_writer_is_refused_naming_the_holder_and_a_stale_lock_is_taken_over(tmp_path):
    lock = writer_lock(tmp_path)
    lock.path.write_text(json.dumps(live_holder()))
    with pytest.raises(LockHeld) as refused:
        writer_lock(tmp_path).acquire("labctl run", "mine")
    message = str(refused.value)
    assert "\n" not in message and f"data directory {tmp_path} is in use by labctl run (experiment other-night) pid 1 on" in message
    assert "use another --data-dir" in message

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.path.write_text(json.dumps(live_holder(pid=int(dead.stdout))))
    with writer_lock(tmp_path).acquire("labctl run", "mine") as taken:
        assert f"its process {int(dead.stdout)} is no longer running" in taken.took_over
        assert json.loads(lock.path.read_text())["experiment"] == "mine"
    assert not lock.path.exists()  # released

    lock.path.write_text(json.dumps(live_holder(host="other-pc", heartbeat=time.time() - 3600)))
    with writer_lock(tmp_path).acquire("labctl run", "mine") as taken:
        assert "its heartbeat is 3600 s old" in taken.took_over


def test_labctl_run_refuses_a_data_directory_another_run_writes(tmp_path, short_experiment, capsys):
    experiment = tmp_path / "short.yaml"
    experiment.write_text(short_experiment)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "writer.lock").write_text(json.dumps(live_holder()))
    assert main(["run", str(experiment), "--data-dir", str(tmp_path / "data")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data directory") and "pid 1 on" in err[0]


def test_instruments_are_locked_per_address_in_the_lab_lock_dir(tmp_path):
    instrument = SimpleNamespace(address="192.168.0.10")
    lab = SimpleNamespace(name="bench", simulated=False, storage=SimpleNamespace(lock_dir=str(tmp_path)),
                          instruments=SimpleNamespace(potentiostat=instrument, chamber=SimpleNamespace(address="tcp://10.0.0.2:502"),
                                                      rig=SimpleNamespace(address="/dev/ttyUSB1")))
    first = instrument_locks(lab, "night-1")
    try:
        assert len(first) == 3 and all(lock.path.parent == tmp_path for lock in first)
        with pytest.raises(LockHeld, match=r"instrument potentiostat at 192.168.0.10 \(lab bench\) is in use by "
                                           r"labctl run \(experiment night-1\) pid \d+"):
            # another process: the same lock file, seen from a different pid
            holder = json.loads(first[0].path.read_text())
            first[0].path.write_text(json.dumps({**holder, "pid": 1}))
            instrument_locks(lab, "night-2")
        assert len(list(tmp_path.glob("*.lock"))) == 3  # the refused one took none of the others
    finally:
        for lock in first:
            lock.release()
    simulated = SimpleNamespace(name="lab-sim", simulated=True, storage=SimpleNamespace(lock_dir=None))
    assert instrument_locks(simulated, "x") == []  # simulated instruments are private to each process


def test_recover_leaves_the_runs_of_a_live_writer_alone(tmp_path, capsys):
    journal = tmp_path / "journal"
    journal.mkdir(parents=True)
    (journal / f"{UID}.jsonl").write_text("".join(journal_lines()[:3]))  # a live run: no stop yet
    (journal / f"{UID}.pending").write_text(json.dumps({"uid": UID, "reason": "not yet confirmed"}))
    (tmp_path / "writer.lock").write_text(json.dumps(live_holder(runs=[UID])))
    assert main(["recover", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0 of 0 runs" in out and "left alone: 1 run(s) of the live labctl run" in out
    assert (journal / f"{UID}.jsonl").read_text() == "".join(journal_lines()[:3])  # untouched: no fake stop
    assert main(["runs", "--data-dir", str(tmp_path)]) == 0
    assert "being written by labctl run (experiment other-night) pid 1" in capsys.readouterr().out


def test_readers_go_through_the_server_of_a_live_writer(tmp_path):
    with Storage.open(tmp_path, writer="night") as writing:
        state = json.loads((tmp_path / "server.json").read_text())
        assert state["uri"] == writing.uri and oct((tmp_path / "server.json").stat().st_mode & 0o777) == "0o600"
        with Storage.open(tmp_path) as reading:  # runs/show/report/export beside the live run
            assert reading.server is None and reading.uri == writing.uri
            assert reading.runs() == []
    assert not (tmp_path / "server.json").exists() and not (tmp_path / "writer.lock").exists()


# ---- point 4: errors at the disk; data directories that travel ------------------------------------
@pytest.mark.parametrize("command", [["runs"], ["show", "abcde"], ["report", "abcde"], ["export", "abcde"], ["recover"]])
def test_an_unusable_data_directory_is_one_error_line(tmp_path, command, capsys):
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("oops")
    missing = tmp_path / "nowhere"
    for data_dir, problem in ((not_a_dir, "is a file, not a data directory"), (missing, "does not exist")):
        assert main([*command, "--data-dir", str(data_dir)]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [err[0]] and err[0].startswith(f"error: {data_dir}: {problem}"), err


def test_labctl_run_into_a_file_is_one_error_line(tmp_path, short_experiment, capsys):
    experiment = tmp_path / "short.yaml"
    experiment.write_text(short_experiment)
    (tmp_path / "data").write_text("oops")
    assert main(["run", str(experiment), "--data-dir", str(tmp_path / "data")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'data'}: is a file, not a data directory: give --data-dir (or storage.data_dir "
                   "in the lab file) a folder labctl can use"]


@pytest.fixture
def moved(plating_run, tmp_path):
    """A copy of the stored short experiment's data directory somewhere else: (data dir, plate uid)."""
    data_dir, uid = plating_run
    copy = tmp_path / "elsewhere" / "data"
    shutil.copytree(data_dir, copy)
    return copy, uid


def test_a_data_directory_copied_elsewhere_reads_completely(moved, plating_run):
    copy, uid = moved
    with Storage.open(copy) as storage:
        run = storage.find(uid)
        assert run.missing == {}
        assert len(run["potentiostat"].read()["potentiostat_Ewe"]) == 3600
        assert len(run["impedance"].read()["potentiostat_eis_z_real"]) >= 3
    with sqlite3.connect(copy / "tiled" / "catalog.db") as db:
        uris = [row[0] for row in db.execute("SELECT data_uri FROM assets")]
    assert uris and all(str(copy) in uri for uri in uris)  # nothing points at the original any more


@pytest.mark.timeout(400)  # three server starts on a loaded 2-core machine
def test_show_of_a_run_whose_page_file_is_missing_shows_the_rest_and_names_it(moved, capsys):
    copy, uid = moved
    (page,) = _pages_of(copy, uid)
    page.unlink()
    assert main(["show", uid, "--data-dir", str(copy), "--out", str(copy.parent / "figures")]) == 0
    out = capsys.readouterr().out
    assert f"stream    potentiostat: not shown, its file is missing: {page}" in out
    assert "stream    impedance:" in out and "figure:" in out
    assert main(["export", uid, "--data-dir", str(copy), "--out", str(copy.parent / "csv")]) == 0


def _pages_of(data_dir, uid):
    journal = (data_dir / "journal" / f"{uid}.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in journal]
    uris = {entry["doc"]["uri"] for entry in entries if entry["name"] == "stream_resource"}
    return [data_dir / "assets" / Path(uri).name for uri in uris]


@pytest.mark.timeout(400)
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare to mount a read-only copy")
def test_an_archive_on_a_read_only_disk_is_listed_shown_and_exported(moved, tmp_path):
    copy, uid = moved
    archive = tmp_path / "archive"
    archive.mkdir()
    out = tmp_path / "out"
    # The four commands run in one interpreter (each as `labctl ...` would, through cli.main), so
    # the mount namespace costs one start of Python, not four. report and export go through the
    # same reading path as show (cli.stored_run).
    commands = [["runs", "--data-dir", str(archive)], ["show", uid, "--data-dir", str(archive), "--out", str(out)],
                ["export", uid, "--data-dir", str(archive), "--out", str(out)], ["show", uid, "--data-dir", str(archive)]]
    driver = ("from labctl.cli import main\n"
              f"runs, shown, exported, default = [main(argv) for argv in {commands!r}]\n"
              "print(f'exported={runs or shown or exported}', flush=True)  # runs && show && export\n"
              "print(f'show-default={default}', flush=True)\n")
    script = (f"mount --bind -o ro {copy} {archive} && ! touch {archive}/x 2>/dev/null && "
              f"{sys.executable} -c {shlex.quote(driver)}")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=380)
    if "exported=" not in result.stdout:
        pytest.skip(f"no read-only mount here: {result.stderr.strip()[-300:]}")
    assert "exported=0" in result.stdout, result.stderr
    assert uid[:8] in result.stdout and "figure:" in result.stdout and list(out.glob("*.csv"))
    # Without --out, show would write into the archive: one error line naming the path, no traceback.
    assert "show-default=0" not in result.stdout
    assert "Traceback" not in result.stderr and "Read-only file system" in result.stderr, result.stderr


# ---- point 3: seconds, not a page, lost at a crash ------------------------------------------------
def test_rows_reach_the_file_every_few_seconds_whatever_the_page_interval(tmp_path, lab_config, monkeypatch):
    """At seeded random moments of a plating run with 15 min pages, copy its HDF5 file as a SIGKILL
    would leave it (what the process handed to the operating system): it holds every row up to a
    few seconds before that moment, and they are the rows the run measured."""
    import h5py

    import devices.biologic.channel as channel
    from devices.sim.cell import CellParameters
    from labctl.core.clock import VirtualClock
    from labctl.lab import build_simulated_lab
    from labctl.session import make_run_engine
    from plans import plate

    monkeypatch.setattr(channel, "SIMULATED_DURABLE_INTERVAL", channel.DURABLE_INTERVAL)  # as on real hardware
    cell = CellParameters(surface="lithiophilic")
    lab = build_simulated_lab(lab_config, cell, tmp_path, VirtualClock(start=1e9))
    RE = make_run_engine(lab.clock)
    began = 1e9 + 60.0  # the first spectrum at rest comes first
    moments = sorted(np.random.default_rng(13).uniform(began + 120, began + 2 * 3600, 6))
    kills = []

    def kill_at(when, number):
        def snapshot():
            shutil.copy(lab.potentiostat._writer.path, tmp_path / f"killed-{number}.h5")
            kills.append((lab.clock.now(), tmp_path / f"killed-{number}.h5"))
        lab.clock.call_at(when, snapshot)

    for number, when in enumerate(moments):
        kill_at(when, number)
    RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=cell.electrode_area,
             geis_interval=3600.0, geis_f_min=10.0, page_interval=900.0, max_duration=3 * 3600.0))
    (final,) = tmp_path.glob("potentiostat-*.h5")
    with h5py.File(final, "r") as file:
        measured = {field: file[f"/data/{field}"][()] for field in ("time", "Ewe")}
    assert len(kills) == 6
    for moment, copy in kills:
        with h5py.File(copy, "r", swmr=True) as file:  # as tiled and labctl recover read it
            time_on_disk, ewe_on_disk = file["/data/time"][()], file["/data/Ewe"][()]
        lost = moment - time_on_disk[-1]
        assert lost <= channel.DURABLE_INTERVAL + 1.0, f"killed at {moment - began:.0f} s: {lost:.1f} s of samples lost"
        np.testing.assert_array_equal(time_on_disk, measured["time"][: len(time_on_disk)])
        np.testing.assert_array_equal(ewe_on_disk, measured["Ewe"][: len(ewe_on_disk)])
    lab.close()


# ---- point 2: serving a data directory while labctl writes it --------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(600)  # two processes each starting tiled, on a loaded 2-core machine
def test_labctl_serve_a_data_directory_and_a_run_writes_through_it(tmp_path, short_experiment):
    from tiled.client import from_uri

    data_dir, port, key = tmp_path / "data", free_port(), secrets.token_hex(32)  # tiled refuses weak keys
    data_dir.mkdir()
    experiment = tmp_path / "short.yaml"
    experiment.write_text(short_experiment)
    serve = subprocess.Popen([sys.executable, "-m", "labctl.cli", "serve", str(data_dir), "--port", str(port),
                              "--api-key", key], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = serve.stdout.readline()
        assert "serving" in line, serve.stderr.read() if not line else line
        assert json.loads((data_dir / "server.json").read_text())["role"] == "labctl serve"
        run = subprocess.run([sys.executable, "-m", "labctl.cli", "run", str(experiment), "--data-dir", str(data_dir)],
                             capture_output=True, text=True, timeout=500)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "4 of 4 runs stored" in run.stdout
        assert not (data_dir / "tiled" / "access.log").exists()  # no second server: nothing of tiled's own
        runs = from_uri(f"http://127.0.0.1:{port}", api_key=key)["runs"]  # the stock tiled client
        plate_uid = next(line.split()[0] for line in run.stdout.splitlines() if " plate " in line)
        assert len(runs[plate_uid]["potentiostat"].read()["potentiostat_Ewe"]) == 3600
        assert len(runs) == 4
        runs.context.close()
    finally:
        serve.terminate()
        serve.communicate(timeout=60)
    assert serve.returncode == 0 and not (data_dir / "server.json").exists()
