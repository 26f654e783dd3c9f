"""What the dashboard reads and serves, without a browser: downsampling, the overview, one run, control."""

import asyncio
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from labctl.dashboard import Dashboard, create_app
from labctl.dashboard.data import min_max_downsample, overview, run_alerts, run_detail
from labctl.storage import Storage

pytestmark = pytest.mark.timeout(600)  # the module's fixtures run experiments (an hour's plating, a plating to a short)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 20000), buckets=st.integers(5, 400), dip=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_downsampling_keeps_every_extreme_in_time_order_and_bounds_the_size(n, buckets, dip, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    y = 0.25 + rng.normal(0, 0.001, n)
    y[int(dip * (n - 1))] = 0.001  # a one-sample soft short
    t_out, y_out = min_max_downsample(t, y, buckets)
    assert len(t_out) <= max(2 * buckets, n if n <= 2 * buckets else 0)
    assert np.all(np.diff(t_out) > 0)
    assert y_out.min() == y.min() and y_out.max() == y.max()
    assert set(t_out) <= set(t)


@pytest.fixture(scope="module")
def catalog(stored):
    storage = Storage.open(stored[0], live=False)
    yield storage.catalog
    storage.close()


def test_the_overview_shows_the_rig_its_newest_run_and_the_plated_capacity(catalog):
    view = overview(catalog)
    (rig,) = view["rigs"]
    assert rig["rig"] == "lab-sim" and rig["cell"] == "LLZTO-CLI-1" and rig["plan"] == "plate"
    assert rig["state"] == "success" and rig["last_alert"] is None  # the hour ended on its time limit
    ends = [alert for alert in view["alerts"] if alert["uid"] == rig["uid"]]  # each run's end is sent, not alarmed
    assert [alert["event"] for alert in ends] == ["experiment_end"] and "LLZTO-CLI-1" in ends[0]["title"]
    assert rig["plated_capacity"] == pytest.approx(0.5, rel=0.01)  # 1 h at 0.5 mA/cm^2
    assert 3600 <= rig["elapsed"] < 3900  # the hour of plating plus its spectra
    assert rig["last_r_int"] is None or rig["last_r_int"] > 0


def test_a_run_has_its_voltage_spectra_with_fits_and_resistances(catalog, plating_run):
    run = run_detail(catalog[plating_run[1]])
    assert run["voltage"]["samples"] == 3600 and len(run["voltage"]["time"]) <= 3000
    assert run["short"] is None and run["guards"] == []
    spectra = run["spectra"]
    assert len(spectra) >= 3 and all(len(s["frequency"]) == len(s["z_real"]) for s in spectra)
    assert all(len(s["fit_z_real"]) == 200 for s in spectra if s["fit_success"])
    resistances = run["resistances"]
    assert len(resistances["bulk"]) == len(spectra)
    assert all(value is None or value > 0 for value in resistances["bulk"] + resistances["interface"])
    capacities = [c for c in resistances["capacity"] if c is not None]
    assert capacities == sorted(capacities) and capacities[-1] <= 0.51


class RecordingManager:
    """Stands in for bluesky-queueserver-api's REManagerAPI: answers status, records calls."""

    def __init__(self, state: str):
        self.state, self.calls = state, []

    def status(self):
        return {"manager_state": self.state, "items_in_queue": 2, "running_item_uid": "x", "queue_stop_pending": False}

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append(name)
            if name == "re_pause":
                self.state = "paused"
            return {"success": True}
        return call


def test_queue_control_needs_the_api_key_and_stop_ends_the_running_plan(catalog):
    manager = RecordingManager("executing_queue")
    client = TestClient(create_app(Dashboard(catalog, {"rig-1": manager}, api_key="s3cret")))
    assert client.get("/").status_code == 200 and "plotly" not in client.get("/").text
    assert "plotly.min.js" in client.get("/run/abcdef").text
    assert client.get("/static/plotly.min.js").status_code == 200
    assert client.get("/api/overview").json()["queues"]["rig-1"] == {"state": "executing_queue", "queued": 2,
                                                                     "running": "x"}
    assert client.post("/api/queues/rig-1/stop").status_code == 401
    assert client.post("/api/queues/rig-1/stop", headers={"X-API-Key": "wrong"}).status_code == 401
    assert manager.calls == []
    assert client.post("/api/queues/rig-9/stop", headers={"X-API-Key": "s3cret"}).status_code == 404
    answer = client.post("/api/queues/rig-1/stop", headers={"X-API-Key": "s3cret"})
    assert answer.status_code == 200, answer.text
    assert manager.calls == ["re_pause", "wait_for_idle_or_paused", "re_stop"]
    assert client.get("/api/runs/nosuchrun").status_code == 404


def test_without_an_api_key_the_dashboard_is_read_only(catalog):
    manager = RecordingManager("executing_queue")
    client = TestClient(create_app(Dashboard(catalog, {"rig-1": manager})))
    assert client.get("/api/overview").json()["controls"] is False
    assert client.post("/api/queues/rig-1/pause", headers={"X-API-Key": ""}).status_code == 401
    assert manager.calls == []


class StoredRun(dict):
    """A run as the catalog gives it: its streams by name (each with ``read``), its documents as metadata."""

    def __init__(self, start: dict, stop: dict | None, streams: dict):
        super().__init__({name: Stream(data) for name, data in streams.items()})
        self.metadata = {"start": start, "stop": stop}


class Stream:
    def __init__(self, data):
        self.data = data

    def read(self):
        return self.data


@settings(max_examples=40, deadline=None)
@given(decisions=st.lists(st.sampled_from([0, 1, 2]), max_size=6),
       ended_by=st.sampled_from(["short", "max_duration", "guard", None]), t0=st.floats(1e9, 2e9))
def test_a_runs_alerts_are_those_labctl_sends_for_its_documents_in_time_order(decisions, ended_by, t0):
    start = {"uid": "r1", "time": t0, "lab": "rig-a", "plan_name": "plate", "cell": {"id": "C-7"}}
    times = t0 + 60.0 * np.arange(1, len(decisions) + 1)
    guards = xr.Dataset({"guards_condition": ("time", np.zeros(len(decisions))),
                         "guards_value": ("time", np.ones(len(decisions))),
                         "guards_decision": ("time", np.asarray(decisions, dtype=float))}, coords={"time": times})
    stop = None if ended_by is None else {"run_start": "r1", "time": t0 + 1e4, "exit_status": "success",
                                          "reason": "short circuit at ..." if ended_by == "short" else "done",
                                          "result": {"ended_by": ended_by}}
    alerts = run_alerts(StoredRun(start, stop, {"guards": guards} if decisions else {}))
    expected = [["guard_pause", "guard_resume", "guard_end"][d] for d in decisions]
    expected += ["short"] * (ended_by == "short") + ["experiment_end"] * (stop is not None)  # a running run has no end
    assert [alert["event"] for alert in alerts] == expected
    assert [alert["time"] for alert in alerts] == [*times] + [t0 + 1e4] * (len(expected) - len(decisions))
    assert all(alert["uid"] == "r1" and alert["rig"] == "rig-a" for alert in alerts)


# ---- one poller for every page ------------------------------------------------------------------
class CountingDashboard(Dashboard):
    """A dashboard whose catalog is one number: counts its reads, changed by the test."""

    def __init__(self):
        super().__init__(None, poll_interval=0)
        self.state, self.reads = 0, 0
        self.read_lock = threading.Lock()

    def fingerprint(self) -> str:
        with self.read_lock:
            self.reads += 1
            return str(self.state)


@settings(max_examples=20, deadline=None)
@given(viewers=st.integers(1, 12), changes=st.integers(0, 5))
def test_one_catalog_read_per_tick_whatever_the_number_of_pages(viewers, changes):
    dashboard = CountingDashboard()
    seen: list[list[int]] = [[] for _ in range(viewers)]

    async def page(i: int, ready: asyncio.Event, done: asyncio.Event):
        async with dashboard.changes.viewer():
            tick, version = await dashboard.changes.wait(0)
            seen[i].append(version)
            ready.set()
            while not done.is_set():
                tick, version = await dashboard.changes.wait(tick)
                if version != seen[i][-1]:
                    seen[i].append(version)

    async def lab():
        done = asyncio.Event()
        readies = [asyncio.Event() for _ in range(viewers)]
        pages = [asyncio.create_task(page(i, readies[i], done)) for i in range(viewers)]
        for ready in readies:
            await ready.wait()
        for _ in range(changes):
            dashboard.state += 1
            await dashboard.changes.wait(dashboard.changes.tick)  # read once changed
            await dashboard.changes.wait(dashboard.changes.tick)  # and every page has woken on it
        done.set()
        await dashboard.changes.wait(dashboard.changes.tick)
        await asyncio.gather(*pages)
        return dashboard.changes.tick

    ticks = asyncio.run(lab())
    assert dashboard.reads == ticks  # one read per tick, not one per page
    assert all(versions == list(range(1, changes + 2)) for versions in seen)  # each page told of each change
    assert dashboard.changes.viewers == 0 and dashboard.changes._poller is None  # stopped with the last page


def test_several_browsers_on_one_server_share_one_poller():
    """Server-sent events over HTTP (uvicorn on loopback) to several connections at once."""
    import httpx
    import uvicorn

    from labctl.dashboard import bind

    dashboard = CountingDashboard()
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(dashboard), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/events"
    try:
        with httpx.Client(timeout=60) as client:
            streams = [client.stream("GET", url) for _ in range(5)]
            responses = [stream.__enter__() for stream in streams]
            lines = [response.iter_lines() for response in responses]

            def next_event(i: int) -> str:
                return next(line for line in lines[i] if line.startswith("data:"))

            first = [next_event(i) for i in range(5)]
            assert len(set(first)) == 1 and dashboard.changes.viewers == 5
            dashboard.state += 1
            second = [next_event(i) for i in range(5)]
            assert len(set(second)) == 1 and second != first
            with dashboard.read_lock:  # no read meanwhile: the ticks can only catch up with the reads
                reads, ticks = dashboard.reads, dashboard.changes.tick
            assert reads - 1 <= ticks <= reads  # one read per tick (one may be just done), not one per page
            for stream in streams:
                stream.__exit__(None, None, None)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_the_dashboard_draws_spectra_and_alerts_without_importing_matplotlib(catalog, plating_run, tmp_path):
    """A fresh interpreter draws a stored run's spectra with their fits (from netCDF copies of its
    streams: a second process does not open the data directory this one holds) and its alerts."""
    import subprocess
    import sys

    run = catalog[plating_run[1]]
    for stream in ("impedance", "impedance_fit"):
        run[stream].read().to_netcdf(tmp_path / f"{stream}.nc")
    (tmp_path / "metadata.json").write_text(json.dumps({"start": run.metadata["start"], "stop": run.metadata["stop"]}))
    code = f"""
import json, sys
from pathlib import Path
import xarray as xr
from labctl.dashboard import app, data
folder = Path({str(tmp_path)!r})
class Run(dict):
    metadata = json.loads((folder / "metadata.json").read_text())
class Stream:
    def __init__(self, path): self.path = path
    def read(self): return xr.load_dataset(self.path)
run = Run({{name: Stream(folder / f"{{name}}.nc") for name in ("impedance", "impedance_fit")}})
spectra = data.spectra(run)
assert spectra and all(len(s["fit_z_real"]) == 200 for s in spectra if s["fit_success"]), spectra
assert [a["event"] for a in data.run_alerts(run)] == ["experiment_end"]
print(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"))
"""
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip().splitlines()[-1] == "[]"


# ---- a short as an alert: last in the module, as its fixture opens a second embedded data server in
# this process; once it had, the catalog fixture's requests were refused (401, invalid API key)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHORTING = """\
name: dashboard-short
lab: {lab}
seed: {seed}
cell:
  id: LLZTO-SHORT-{seed}
  kind: symmetric
  thickness: 1.2 mm
  electrode_diameter: 2 mm
steps:
  - plan: set_pressure
    pressure: 5 MPa
  - plan: plate
    current_density: 0.5 mA/cm^2
    geis_interval: 30 min
    geis_f_min: 10 Hz
    max_duration: 12 h
"""


@pytest.fixture(scope="module")
def shorted(tmp_path_factory):
    """A cell plated until it shorts (``labctl run``, as the browser test's), and its catalog."""
    from labctl.cli import main

    folder = tmp_path_factory.mktemp("short")
    (folder / "short.yaml").write_text(SHORTING.format(lab=CONFIGS / "lab-sim.yaml", seed=7))
    main(["run", str(folder / "short.yaml"), "--data-dir", str(folder / "data")])
    storage = Storage.open(folder / "data", live=False)
    yield storage.catalog
    storage.close()


def test_a_short_is_the_rigs_last_alert_and_heads_the_alert_list(shorted):
    view = overview(shorted)
    (rig,) = view["rigs"]
    assert rig["plan"] == "plate"
    assert rig["reason"] and "short circuit" in rig["reason"], rig["reason"]
    assert rig["last_alert"]["event"] == "short" and "short circuit" in rig["last_alert"]["body"]
    events = [(alert["event"], alert["uid"] == rig["uid"]) for alert in view["alerts"]]  # newest first
    assert events == [("experiment_end", True), ("short", True), ("experiment_end", False)]  # then set_pressure's
    assert rig["last_alert"]["time"] == shorted[rig["uid"]].metadata["stop"]["time"]
