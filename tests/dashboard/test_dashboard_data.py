"""What the dashboard reads and serves, without a browser: downsampling, the overview, one run, control."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from labctl.dashboard import Dashboard, create_app
from labctl.dashboard.data import min_max_downsample, overview, run_detail
from labctl.storage import Storage


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
    (rig,) = overview(catalog)["rigs"]
    assert rig["rig"] == "lab-sim" and rig["cell"] == "LLZTO-CLI-1" and rig["plan"] == "plate"
    assert rig["state"] == "success" and rig["last_alert"] is None  # the hour ended on its time limit
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
