"""A data server on another host (issue 13, point 5): a stock `tiled serve catalog` that shares no files with the lab.

The server runs as its own process, in a directory of its own that the lab's data directory is
not under, with no readable storage at all: it cannot read the lab's HDF5 pages, so every row
it serves went up through the tiled client (labctl.storage.upload).
"""

import contextlib
import io
import json
import logging
import socket
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from tiled.client import from_uri

import labctl.storage.delivery
from labctl.cli import main
from labctl.dataserver import StandaloneServer
from labctl.storage import Storage

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OUTAGE = 20.0  # s the server is down, mid-run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    tiled = StandaloneServer(tmp_path / "server-host", free_port())
    tiled.start()
    yield tiled
    tiled.close()


def lab_with_uri(folder: Path, uri: str) -> Path:
    """configs/lab-sim.yaml with ``storage.uri`` set."""
    text = (CONFIGS / "lab-sim.yaml").read_text()
    assert "  uri: null" in text
    lab = folder / "lab-remote.yaml"
    lab.write_text(text.replace("  uri: null", f"  uri: {json.dumps(uri)}", 1))
    return lab


def journal_of(data_dir: Path) -> dict[str, list[tuple[str, dict]]]:
    runs = {}
    for path in (data_dir / "journal").glob("*.jsonl"):
        runs[path.stem] = [(entry["name"], entry["doc"]) for entry in map(json.loads, path.read_text().splitlines())]
    return runs


def rows_in_pages(documents, data_key: str) -> np.ndarray:
    """The rows of a data key the journal announces, read from the lab's own HDF5 files."""
    resources = {doc["uid"]: doc for name, doc in documents if name == "stream_resource" and doc["data_key"] == data_key}
    parts = []
    for name, doc in documents:
        if name == "stream_datum" and doc["stream_resource"] in resources:
            resource = resources[doc["stream_resource"]]
            with h5py.File(resource["uri"].removeprefix("file://localhost"), "r", swmr=True) as file:
                parts.append(file[resource["parameters"]["dataset"]][doc["indices"]["start"]:doc["indices"]["stop"]])
    return np.concatenate(parts)


@pytest.mark.timeout(600)  # a tiled process started twice and a simulated experiment, on a loaded 2-core machine
def test_the_overnight_experiment_reaches_a_server_on_another_host_through_a_20_s_outage(
        tmp_path, server, short_experiment, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="labctl.storage")
    monkeypatch.setattr(labctl.storage.delivery, "RETRY_AFTER", 0.2)  # catch up soon after the server is back
    monkeypatch.setattr(labctl.storage.delivery, "RETRY_MAX", 1.0)
    monkeypatch.setattr("tiled.client.utils.TILED_RETRY_ATTEMPTS", 1)
    lab_dir = tmp_path / "lab-pc"
    lab_dir.mkdir()
    assert not str(lab_dir).startswith(str(server.directory))
    experiment = lab_dir / "overnight.yaml"
    experiment.write_text(short_experiment.replace(str(CONFIGS / "lab-sim.yaml"), str(lab_with_uri(lab_dir, server.uri))))
    data_dir = lab_dir / "data"

    # Take the server down as the plating run starts, for OUTAGE seconds, on a thread of its own.
    plating_started, outage = threading.Event(), {}
    callback = Storage.callback

    def watched(self, name, doc):
        callback(self, name, doc)
        if name == "start" and doc.get("plan_name") == "plate":
            plating_started.set()
        if name == "stop" and "killed" in outage and "run_ended_while_down" not in outage:
            outage["run_ended_while_down"] = "restarted" not in outage

    def take_down():
        plating_started.wait()
        server.kill()
        outage["killed"] = True
        threading.Event().wait(OUTAGE)
        server.start()
        outage["restarted"] = True

    thread = threading.Thread(target=take_down, daemon=True)
    flush = Storage.flush

    def flush_once_back(self, timeout=60):
        # The run's own flush gives the server 60 s; on a loaded machine starting tiled again can take
        # about that long, so count from when it is back: what is tested is the catch-up, not the load.
        thread.join(timeout=300)
        return flush(self, timeout)

    monkeypatch.setattr(Storage, "callback", watched)
    monkeypatch.setattr(Storage, "flush", flush_once_back)
    thread.start()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(experiment), "--data-dir", str(data_dir)])
    thread.join(timeout=120)
    assert code == 0, out.getvalue()
    assert outage.get("restarted") and "run_ended_while_down" in outage  # killed mid-run: a run ended after it
    assert "is behind in the server" in caplog.text and "caught up from the journal" in caplog.text
    assert "4 of 4 runs stored" in out.getvalue(), out.getvalue()
    assert not list((data_dir / "journal").glob("*.pending"))

    # Every stream of every run, read back with the stock tiled client, is what was measured.
    runs = from_uri(f"http://127.0.0.1:{server.port}", api_key=server.api_key)["runs"]
    try:
        journal = journal_of(data_dir)
        assert set(runs) == set(journal)
        for uid, documents in journal.items():
            stop = next(doc for name, doc in documents if name == "stop")
            run = runs[uid]
            assert run.metadata["stop"]["exit_status"] == stop["exit_status"]
            assert sorted(run) == sorted(stop["num_events"])
            for stream, count in stop["num_events"].items():
                data = run[stream].read()
                assert data.sizes["time"] == count, (uid, stream)
            for name, doc in documents:
                if name == "stream_resource":
                    stream = runs[uid]["potentiostat"]
                    np.testing.assert_array_equal(stream[doc["data_key"]].read(), rows_in_pages(documents, doc["data_key"]))
                    # The server holds the rows itself: nothing of it points at a file of the lab PC.
                    sources = runs.include_data_sources()[uid]["potentiostat"].base[doc["data_key"]].data_sources()
                    assert all(source.management != "external" for source in sources)
        plate = next(uid for uid, docs in journal.items() if docs[0][1]["plan_name"] == "plate")
        assert runs[plate]["potentiostat"]["potentiostat_Ewe"].shape == (3600,)
    finally:
        runs.context.close()
    assert any((server.directory / "data").iterdir())  # the arrays went into the server's writable storage
