"""Storage and stream assets: RunEngine -> journal -> tiled, and back as xarray.

One embedded tiled server serves the module (starting one takes a few seconds); the tests that
need their own data directory (persistence, an unreachable server) open their own.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from types import SimpleNamespace

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.protocols import Collectable, Flyable, WritesStreamAssets
from ophyd import Signal
from ophyd.sim import SynSignal

from labctl.core.assets import FieldSpec, HDF5StreamWriter
from labctl.storage import Storage

FIELDS = {
    "time": FieldSpec(units="s"),
    "Ewe": FieldSpec(units="V"),
    "I": FieldSpec(units="A"),
    "charge": FieldSpec(units="C"),
}
CELL = {"id": "LLZO-7", "electrolyte": "LLZO"}


# ---- a minimal flyer: what the RunEngine asks of a device that writes stream assets -----------
class DoneStatus:
    """A status that is already finished (the bluesky ``Status`` protocol)."""

    done = True
    success = True

    def add_callback(self, callback):
        callback(self)

    def exception(self, timeout=None):
        return None


class PageFlyer:
    """Ophyd-free flyer: each ``collect`` writes the next prepared page and yields its documents.

    Like the potentiostat channel, it reads what was measured when it is collected.
    """

    parent = None

    def __init__(self, writer: HDF5StreamWriter, pages: list[dict[str, np.ndarray]]):
        self.name = writer.stream_name
        self.writer = writer
        self.pages = list(pages)

    def stage(self):
        self.writer.open("test")
        return [self]

    def unstage(self):
        self.writer.close()
        return [self]

    def kickoff(self):
        return DoneStatus()

    def complete(self):
        return DoneStatus()

    def describe_collect(self):
        return self.writer.describe()

    def collect_asset_docs(self, index=None):
        if self.pages:
            yield from self.writer.append(self.pages.pop(0))

    def get_index(self):
        return self.writer.get_index()


class DurableOnlyFlyer(PageFlyer):
    """A flyer killed before its first page: its rows reach the file (a durable write), no document announces them.

    As the real channel's are, the run's reading (``clock``, read just before) is stamped with the
    time of the latest row: that is how recover tells the run's file from others.
    """

    def __init__(self, writer, pages, clock):
        super().__init__(writer, pages)
        self.clock = clock

    def collect_asset_docs(self, index=None):
        if self.pages:
            page = self.pages.pop(0)
            rows = len(page["time"])
            self.writer.write({**page, "time": self.clock.timestamp - np.arange(rows)[::-1]})
        yield from ()


def make_pages(n_pages: int, rows: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pages = []
    for k in range(n_pages):
        t = np.arange(k * rows, (k + 1) * rows, dtype=float)
        current = rng.normal(1e-4, 1e-6, rows)
        pages.append({"time": t, "Ewe": rng.normal(0.05, 0.01, rows), "I": current, "charge": np.cumsum(current)})
    return pages


def concat(pages, field):
    return np.concatenate([page[field] for page in pages])


def cycling_plan(flyer, signals, temperatures, *, md, reason=None, fail_after=None):
    """A run with a primary stream (one event per temperature) and the flyer's stream."""
    temperature, synthetic = signals

    @bpp.stage_decorator([flyer])
    def body():
        yield from bps.open_run(md=md)
        yield from bps.declare_stream(flyer, name=flyer.name, collect=True)
        yield from bps.kickoff(flyer, wait=True)
        for step, value in enumerate(temperatures):
            if fail_after is not None and step == fail_after:
                raise RuntimeError("chamber over temperature")
            yield from bps.mv(temperature, value)
            yield from bps.trigger_and_read([temperature, synthetic])
            yield from bps.collect(flyer, name=flyer.name)
        yield from bps.complete(flyer, wait=True)
        return (yield from bps.close_run(exit_status="success" if reason else None, reason=reason))

    return body()


# ---- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    storage = Storage.open(tmp_path_factory.mktemp("data"))
    try:
        yield storage
    finally:
        storage.close()


@pytest.fixture
def signals():
    temperature = Signal(name="temperature", value=298.15)
    synthetic = SynSignal(func=lambda: 2.5, name="pressure")
    return temperature, synthetic


@pytest.fixture
def record(storage, signals):
    """Run a cycling plan into ``storage``; return (uid, pages, temperatures, documents seen)."""

    def run(n_pages=3, rows=7, *, target=storage, reason=None, fail_after=None, cell=CELL):
        RE = RunEngine({})
        seen = []
        RE.subscribe(target.callback)
        RE.subscribe(lambda name, doc: seen.append((name, json.loads(json.dumps(doc, default=_plain)))))
        pages = make_pages(n_pages, rows)
        flyer = PageFlyer(HDF5StreamWriter(target.assets_dir, "cycler", FIELDS, chunk_rows=8), pages)
        temperatures = [298.15 + 5.0 * k for k in range(n_pages)]
        md = {"plan_name": "cycling", "cell": cell}
        plan = cycling_plan(flyer, signals, temperatures, md=md, reason=reason, fail_after=fail_after)
        uids = RE(plan)
        uid = uids[0] if uids else next(doc["uid"] for name, doc in seen if name == "start")
        return uid, make_pages(n_pages, rows), temperatures, seen

    return run


def _plain(obj):
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- HDF5StreamWriter on its own --------------------------------------------------------------
def test_writer_documents_and_file(tmp_path):
    writer = HDF5StreamWriter(tmp_path, "cycler", FIELDS, chunk_rows=4)
    flyer = PageFlyer(writer, [])
    assert isinstance(flyer, Flyable) and isinstance(flyer, Collectable)
    assert isinstance(flyer, WritesStreamAssets)

    keys = writer.describe()
    assert set(keys) == {"cycler_time", "cycler_Ewe", "cycler_I", "cycler_charge"}
    assert keys["cycler_Ewe"] == {
        "source": "hdf5:cycler/data/Ewe", "dtype": "number", "dtype_numpy": "<f8",
        "shape": [], "units": "V", "external": "STREAM:",
    }

    path = writer.open("run-1")
    pages = make_pages(3, 5)
    first = writer.append(pages[0])
    assert [name for name, _ in first] == ["stream_resource"] * 4 + ["stream_datum"] * 4
    resources = {doc["data_key"]: doc for name, doc in first if name == "stream_resource"}
    assert resources["cycler_I"]["parameters"]["dataset"] == "/data/I"
    assert resources["cycler_I"]["mimetype"] == "application/x-hdf5"
    assert resources["cycler_I"]["uri"] == "file://localhost" + str(path)

    second = writer.append(pages[1])
    assert [name for name, _ in second] == ["stream_datum"] * 4
    assert writer.append({field: np.empty(0) for field in FIELDS}) == []
    third = writer.append(pages[2])
    for docs, (start, stop) in ((first, (0, 5)), (second, (5, 10)), (third, (10, 15))):
        for name, doc in docs:
            if name == "stream_datum":
                assert doc["indices"] == {"start": start, "stop": stop}
                # The RunEngine fills these; it refuses stream datums that already carry them.
                assert doc["seq_nums"] == {"start": 0, "stop": 0} and doc["descriptor"] == ""
    assert writer.get_index() == 15

    # The rows are in the file as soon as append() returns, readable while it is still open.
    with h5py.File(path, "r", swmr=True, libver="latest") as file:
        np.testing.assert_array_equal(file["/data/charge"][:], concat(pages, "charge"))
    writer.close()


def test_writer_rejects_bad_pages(tmp_path):
    writer = HDF5StreamWriter(tmp_path, "cycler", FIELDS)
    with pytest.raises(RuntimeError):
        writer.append(make_pages(1, 3)[0])
    writer.open("x")
    page = make_pages(1, 3)[0]
    with pytest.raises(ValueError, match="missing"):
        writer.append({k: v for k, v in page.items() if k != "I"})
    with pytest.raises(ValueError, match="same length"):
        writer.append({**page, "I": np.zeros(2)})
    writer.close()


# ---- round trip through the RunEngine and tiled -----------------------------------------------
def test_round_trip_as_xarray(storage, record):
    uid, pages, temperatures, _ = record(n_pages=4, rows=9)
    assert storage.flush(timeout=30)

    run = storage.catalog[uid]
    primary = run["primary"].read()
    np.testing.assert_array_equal(primary["temperature"].values, temperatures)
    np.testing.assert_array_equal(primary["pressure"].values, [2.5] * len(temperatures))

    cycler = run["cycler"].read()
    for field in FIELDS:
        np.testing.assert_array_equal(cycler[f"cycler_{field}"].values, concat(pages, field))
    assert run.primary.read().equals(primary)  # the attribute form of the recipe
    assert storage.find(uid[:8]).start["uid"] == uid


def test_runs_report_exit_status_and_reason(storage, record):
    ok, *_ = record(reason="short circuit: |Ewe| < 1 mV for 60 s")
    with pytest.raises(RuntimeError, match="over temperature"):
        record(fail_after=1)
    assert storage.flush(timeout=30)

    runs = storage.runs()
    failed, shorted = runs[0], next(run for run in runs if run["uid"] == ok)
    assert shorted["exit_status"] == "success"
    assert shorted["reason"] == "short circuit: |Ewe| < 1 mV for 60 s"
    assert shorted["plan_name"] == "cycling" and shorted["cell_id"] == "LLZO-7"
    assert shorted["num_events"] == {"primary": 3, "cycler": 21}
    assert shorted["start"][:4].isdigit() and "T" in shorted["start"]
    assert failed["exit_status"] == "fail" and "over temperature" in failed["reason"]
    assert [run["uid"] for run in storage.runs(limit=1)] == [failed["uid"]]


def test_search_by_cell(storage, record):
    other, *_ = record(cell={"id": "LPSCl-2"})
    assert storage.flush(timeout=30)
    assert list(storage.search_cell("LPSCl-2")) == [other]
    assert other not in list(storage.search_cell("LLZO-7"))
    assert storage.runs(node=storage.search_cell("LPSCl-2"))[0]["uid"] == other


def test_journal_holds_every_document_in_order(storage, record):
    uid, _, _, seen = record(n_pages=2, rows=4)
    journal = storage.journal.read(uid)
    assert journal == seen
    assert [name for name, _ in journal][:2] == ["start", "descriptor"] and journal[-1][0] == "stop"
    assert storage.flush(timeout=30)
    assert uid not in storage.pending()


# ---- persistence and failure ------------------------------------------------------------------
def test_second_storage_sees_earlier_runs(tmp_path, record):
    first = Storage.open(tmp_path)
    try:
        uid, pages, _, _ = record(n_pages=2, rows=5, target=first)
        assert first.flush(timeout=30)
    finally:
        first.close()

    second = Storage.open(tmp_path)
    try:
        assert [run["uid"] for run in second.runs()] == [uid]
        cycler = second.catalog[uid]["cycler"].read()
        np.testing.assert_array_equal(cycler["cycler_Ewe"].values, concat(pages, "Ewe"))
    finally:
        second.close()


def test_unreachable_server_does_not_stop_the_run(tmp_path, record, monkeypatch, caplog):
    # tiled retries a refused connection for ~25 s by default; once is enough to see it fail.
    monkeypatch.setattr("tiled.client.utils.TILED_RETRY_ATTEMPTS", 1)
    storage = Storage.open(tmp_path, uri=f"http://127.0.0.1:{closed_port()}/api/v1")
    try:
        uid, _, _, seen = record(n_pages=2, rows=4, target=storage)
        assert storage.journal.read(uid) == seen  # complete before any delivery was attempted
        assert storage.flush(timeout=1) is False
        assert uid in storage.pending()
        assert any("is behind in the server (kept in the journal; retrying)" in message for message in caplog.messages)
    finally:
        storage.close(timeout=1)


def test_recover_writes_in_a_run_the_server_missed(tmp_path, record, monkeypatch):
    monkeypatch.setattr("tiled.client.utils.TILED_RETRY_ATTEMPTS", 1)
    offline = Storage.open(tmp_path, uri=f"http://127.0.0.1:{closed_port()}/api/v1")
    try:
        uid, pages, _, _ = record(n_pages=2, rows=4, target=offline)
    finally:
        offline.close(timeout=1)

    with Storage.open(tmp_path) as storage:  # the same data directory, a server that is up
        (outcome,) = storage.recover().values()
        assert (outcome.delivered, outcome.message, outcome.points_lost) == (True, "delivered from the journal; cycler: 8 points in 2 journalled pages, 0 lost", 0)
        assert storage.pending() == {}
        (summary,) = storage.runs()
        assert (summary["uid"], summary["exit_status"]) == (uid, "success")
        cycler = storage.catalog[uid]["cycler"].read()
        np.testing.assert_array_equal(cycler["cycler_Ewe"].values, concat(pages, "Ewe"))


def test_recover_closes_a_run_the_process_never_stopped(tmp_path, record):
    crashed = Storage.open(tmp_path, live=False)
    try:
        # The process "dies" before the stop document: it never reaches the journal or the server.
        cut_short = SimpleNamespace(
            assets_dir=crashed.assets_dir,
            callback=lambda name, doc: name == "stop" or crashed.callback(name, doc),
        )
        uid, pages, temperatures, _ = record(n_pages=3, rows=5, target=cut_short)
        crashed.flush(timeout=30)
        assert uid in crashed.pending()
    finally:
        crashed.close(timeout=30)

    with Storage.open(tmp_path) as storage:
        outcome = storage.recover()[uid]
        assert "cycler: 15 points in 3 journalled pages, 0 lost" in outcome.message
        assert "closed as failed (interrupted" in outcome.message and outcome.points_lost == 0
        run = storage.catalog[uid]
        stop = run.metadata["stop"]
        assert stop["exit_status"] == "fail" and stop["reason"].startswith("interrupted")
        assert stop["num_events"] == {"primary": 3, "cycler": 15}  # rows, as bluesky counts collected streams
        np.testing.assert_array_equal(run["cycler"].read()["cycler_Ewe"].values, concat(pages, "Ewe"))
        np.testing.assert_array_equal(run["primary"].read()["temperature"].values, temperatures)
        assert storage.journal.read(uid)[-1][0] == "stop"  # the journal is complete now too
        assert storage.pending() == {}
        assert storage.recover() == {}  # idempotent: nothing left to do


def test_recover_keeps_rows_written_after_the_last_journalled_page(tmp_path, record):
    crashed = Storage.open(tmp_path, live=False)
    try:
        # Killed between the file write of the last page and its stream datums (and a last journal
        # line half written): the rows are in the HDF5 file, the journal never heard of them.
        datums = []

        def dying(name, doc):
            if name == "stream_datum":
                datums.append(doc)
            if name == "stop" or (name == "stream_datum" and len(datums) > 2 * len(FIELDS)):
                return
            crashed.callback(name, doc)

        uid, pages, _, _ = record(n_pages=3, rows=5, target=SimpleNamespace(assets_dir=crashed.assets_dir, callback=dying))
        crashed.flush(timeout=30)
    finally:
        crashed.close(timeout=30)
    with open(crashed.journal.path(uid), "a") as journal:
        journal.write('{"name": "event", "doc": {"uid": "cut sh')

    with Storage.open(tmp_path) as storage:
        outcome = storage.recover()[uid]
        assert "cycler: 10 points in 2 journalled pages, 0 lost, 5 written after the last page recovered" in outcome.message
        run = storage.catalog[uid]
        np.testing.assert_array_equal(run["cycler"].read()["cycler_Ewe"].values, concat(pages, "Ewe"))
        assert run.metadata["stop"]["num_events"]["cycler"] == 15
        assert storage.journal.read(uid)[-1][0] == "stop"  # the cut-short line was dropped, not glued to


def test_recover_keeps_the_rows_of_a_run_killed_before_its_first_page(tmp_path, signals):
    """Rows reach the file every few seconds, but the journal learns of the file only with the first
    page: a run killed before it left rows in a file no journal names; recover finds them."""
    crashed = Storage.open(tmp_path, live=False)
    try:
        rows = 6
        pages = make_pages(1, rows)
        flyer = DurableOnlyFlyer(HDF5StreamWriter(crashed.assets_dir, "cycler", FIELDS, chunk_rows=8), pages,
                                 clock=signals[0])
        RE = RunEngine({})
        RE.subscribe(lambda name, doc: name == "stop" or crashed.callback(name, doc))  # killed before its stop
        (uid,) = RE(cycling_plan(flyer, signals, [298.15], md={"plan_name": "cycling", "cell": CELL}))
        crashed.flush(timeout=30)
    finally:
        crashed.close(timeout=30)
    assert not any(name == "stream_resource" for name, _ in crashed.journal.read(uid))

    with Storage.open(tmp_path) as storage:
        outcome = storage.recover()[uid]
        assert "rows written before the first page recovered from test-cycler-" in outcome.message, outcome.message
        assert f"cycler: 0 points in 0 journalled pages, 0 lost, {rows} written after the last page recovered" in outcome.message
        run = storage.catalog[uid]
        np.testing.assert_array_equal(run["cycler"].read()["cycler_Ewe"].values, pages[0]["Ewe"])
        assert run.metadata["stop"]["num_events"]["cycler"] == rows
        assert storage.recover() == {}  # the file is named in the journal now


def test_recover_writes_in_a_journalled_run_the_catalog_lacks(tmp_path, record):
    with Storage.open(tmp_path) as storage:
        uid, pages, _, _ = record(n_pages=2, rows=4, target=storage)
        assert storage.flush(timeout=30)
        writer_client = storage._connect_writer()
        writer_client[uid].delete(recursive=True, external_only=False)  # e.g. a catalog restored from an old backup
        writer_client.context.close()
        assert uid not in storage.catalog and storage.pending() == {}
        assert storage.recover()[uid].delivered
        np.testing.assert_array_equal(storage.catalog[uid]["cycler"].read()["cycler_Ewe"].values, concat(pages, "Ewe"))
        assert storage.recover() == {}


def test_a_script_that_never_closes_its_storage_still_exits(tmp_path):
    """The embedded server's thread must not keep the interpreter alive (the README's recipes omit close())."""
    script = ("import sys; from labctl.storage import Storage\n"
              f"storage = Storage.open({str(tmp_path)!r})\n"
              "list(storage.catalog)  # starts the embedded tiled server\n"
              "print('read', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=110)
    assert (done.returncode, done.stdout.strip()) == (0, "read"), done.stderr[-2000:]
