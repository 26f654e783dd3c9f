"""A rig's queue for real: private Redis, a data server and ``labctl queue serve`` on loopback."""

from __future__ import annotations

import pytest

pytest.importorskip("bluesky_queueserver")
pytestmark = pytest.mark.timeout(300)  # the first test also waits for the RE Manager and its worker (slow on a loaded machine)

from labctl.cli import main  # noqa: E402
from tests.queue_servers import Queue, Redis, write_experiment, write_lab  # noqa: E402

PACE = 60  # simulated seconds per wall second: a plate of an hour lasts a minute, stopped long before
PLATE = {"plan": "plate", "current_density": "0.5 mA/cm^2", "max_duration": "2 h", "geis_interval": "30 min",
         "geis_f_min": "10 Hz"}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from labctl.dataserver import DataServer

    directory = tmp_path_factory.mktemp("queue")
    redis = Redis(directory).start()
    server = DataServer(directory / "server", api_key="secret")
    lab = write_lab(directory, "rig-a", redis.port, f"{server.uri}")
    queue = None
    try:
        queue = Queue(lab, PACE, directory / "rig-a.log").start()
        yield queue, redis, directory
    finally:
        if queue is not None:
            queue.stop()
        server.close()
        redis.stop()


@pytest.fixture
def queue(rig):
    queue, _, _ = rig
    yield queue
    if queue.api.status(reload=True)["manager_state"] != "idle":  # leave it idle with an empty queue for the next test
        main(["queue", "stop", "--now", "--queue", queue.address])
    queue.api.queue_clear()
    queue.api.wait_for_idle(timeout=60)


def submit(rig, name: str, steps: list[dict]) -> None:
    queue, _, directory = rig
    path = write_experiment(directory, queue.lab_path, name, steps)
    assert main(["submit", str(path), "--queue", queue.address]) == 0


def test_submit_adds_one_batch_with_metadata(rig, queue, capsys):
    submit(rig, "two-steps", [{"plan": "rest", "duration": "10 min"}, PLATE])
    items = queue.api.queue_get()["items"]
    assert [item["name"] for item in items] == ["rest", "plate"]
    assert {item["meta"]["sequence_id"] for item in items} == {items[0]["meta"]["sequence_id"]}
    assert [item["meta"]["step_index"] for item in items] == [0, 1]
    assert items[0]["meta"]["cell"]["id"] == "CELL-1" and items[0]["meta"]["experiment_file"].endswith("two-steps.yaml")


def test_items_from_another_client_are_validated_in_si(queue):
    from bluesky_queueserver_api import BPlan

    cell = {"id": "X"}
    for bad in ("lots", -5.0, 5000.0):
        with pytest.raises(Exception, match="current_density|out of range|float"):
            queue.api.item_add(BPlan("plate", current_density=bad, cell=cell))
    assert queue.api.item_add(BPlan("plate", current_density=5.0, cell=cell))["success"]


def test_readonly_group_cannot_add(queue):
    from bluesky_queueserver_api import BPlan

    with pytest.raises(Exception, match="not in the list of allowed plans"):
        queue.api.item_add(BPlan("rest", duration=60.0, cell={"id": "X"}), user_group="readonly")


@pytest.mark.parametrize("action", ["pause", "stop", "abort", "halt"])
def test_the_cell_goes_to_open_circuit(rig, queue, action):
    submit(rig, f"plate-{action}", [PLATE])
    assert main(["queue", "start", "--queue", queue.address]) == 0
    queue.wait_running_closed_circuit()
    argv = ["queue", action, "--queue", queue.address] + (["--now"] if action == "stop" else [])
    assert main(argv) == 0
    queue.api.wait_for_idle_or_paused(timeout=60)
    assert queue.cell_state()["circuit"] == "open"
    if action == "pause":
        assert main(["queue", "resume", "--queue", queue.address]) == 0
        queue.wait_running_closed_circuit()
        assert main(["queue", "abort", "--queue", queue.address]) == 0
        queue.api.wait_for_idle(timeout=60)
        assert queue.cell_state()["circuit"] == "open"
    else:
        history = queue.api.history_get()["items"]
        assert history[-1]["result"]["exit_status"] == {"stop": "stopped", "abort": "aborted", "halt": "halted"}[action]


def test_the_dashboards_stop_button_ends_the_plan_with_the_cell_at_open_circuit(rig, queue):
    """The dashboard's queue control against the real RE Manager: refused without the key, then stop."""
    from starlette.testclient import TestClient

    from labctl.dashboard import Dashboard, create_app

    submit(rig, "plate-dashboard", [PLATE])
    assert main(["queue", "start", "--queue", queue.address]) == 0
    queue.wait_running_closed_circuit()
    client = TestClient(create_app(Dashboard(None, {"rig-a": queue.api}, api_key="k3y")))  # control needs no catalog
    assert client.post("/api/queues/rig-a/stop").status_code == 401
    assert queue.cell_state()["circuit"] == "closed"
    answer = client.post("/api/queues/rig-a/stop", headers={"X-API-Key": "k3y"})
    assert answer.status_code == 200, answer.text
    queue.api.wait_for_idle(timeout=60)
    assert queue.cell_state()["circuit"] == "open"
    assert queue.api.history_get()["items"][-1]["result"]["exit_status"] == "stopped"
