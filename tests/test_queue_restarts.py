"""What bit other facilities: the RE Manager restarted (Redis keeps its queue), Redis restarted empty or down under it."""

from __future__ import annotations

import pytest

pytest.importorskip("bluesky_queueserver")

from labctl.cli import main  # noqa: E402
from tests.queue_servers import Queue, Redis, write_experiment, write_lab  # noqa: E402
from tests.test_queue_live import PACE, PLATE  # noqa: E402


@pytest.fixture
def stack(tmp_path):
    from labctl.dataserver import DataServer

    redis = Redis(tmp_path).start()
    server = DataServer(tmp_path / "server", api_key="secret")
    lab = write_lab(tmp_path, "rig-b", redis.port, server.uri)
    queues = []
    try:
        yield redis, lab, queues, tmp_path
    finally:
        for queue in queues:
            queue.stop()
        server.close()
        redis.stop()


@pytest.mark.timeout(600)  # two RE Manager starts on a loaded machine
def test_manager_restarted_keeps_the_queue(stack):
    redis, lab, queues, directory = stack
    queue = Queue(lab, PACE, directory / "rig-b.log").start(open_environment=False)
    queues.append(queue)
    experiment = write_experiment(directory, lab, "queued", [{"plan": "rest", "duration": "10 min"}, PLATE])
    assert main(["submit", str(experiment), "--queue", queue.address]) == 0
    before = [item["item_uid"] for item in queue.api.queue_get()["items"]]
    queue.stop()
    again = Queue(lab, PACE, directory / "rig-b.log").start(open_environment=False)
    queues.append(again)
    assert [item["item_uid"] for item in again.api.queue_get(reload=True)["items"]] == before
    assert set(again.api.plans_allowed(reload=True)["plans_allowed"]) >= {"rest", "plate"}


@pytest.mark.timeout(600)  # two RE Manager starts on a loaded machine
def test_redis_restarted_empty_is_said_in_one_line_and_a_restarted_manager_starts_empty(stack, capsys):
    redis, lab, queues, directory = stack
    queue = Queue(lab, PACE, directory / "rig-b.log").start(open_environment=False)
    queues.append(queue)
    experiment = write_experiment(directory, lab, "lost", [{"plan": "rest", "duration": "10 min"}, PLATE])
    assert main(["submit", str(experiment)]) == 0  # the rig's lab file (the experiment's) names the queue
    assert main(["queue", "status", "--lab", str(lab)]) == 0

    redis.stop()  # Redis down: said, in one line
    capsys.readouterr()
    assert main(["queue", "status", "--lab", str(lab)]) == 4
    assert "does not answer" in capsys.readouterr().err

    redis.start()  # the same port, nothing saved: back empty, under a manager that still counts 2 items
    assert main(["queue", "status", "--lab", str(lab)]) == 4
    out, err = capsys.readouterr()
    assert "2 queued" in out  # what the manager says...
    assert err.startswith(f"error: queue: Redis at 127.0.0.1:{redis.port} has lost this rig's queue")  # ...and why not
    assert "restart `labctl queue serve" in err and err.count("\n") == 1
    for argv in (["submit", str(experiment)], ["queue", "start", "--lab", str(lab)]):
        assert main(argv) == 4 and "has lost this rig's queue" in capsys.readouterr().err

    # The way out it names: the restarted manager reads the empty queue Redis now holds, and takes files.
    queue.stop()
    again = Queue(lab, PACE, directory / "rig-b.log").start(open_environment=False)
    queues.append(again)
    assert main(["queue", "status", "--lab", str(lab)]) == 0
    assert "0 queued, 0 in history" in capsys.readouterr().out
    assert main(["submit", str(experiment)]) == 0
    assert [item["name"] for item in again.api.queue_get(reload=True)["items"]] == ["rest", "plate"]
    assert again.api.status(reload=True)["plan_queue_mode"]["ignore_failures"]  # set again by submit


@pytest.mark.timeout(600)  # two RE Manager starts on a loaded machine
def test_redis_lost_under_a_running_plan_still_stops_it_at_open_circuit(stack, capsys):
    redis, lab, queues, directory = stack
    queue = Queue(lab, PACE, directory / "rig-b.log").start()
    queues.append(queue)
    experiment = write_experiment(directory, lab, "running", [PLATE, {"plan": "rest", "duration": "10 min"}])
    assert main(["submit", str(experiment)]) == 0
    assert main(["queue", "start", "--lab", str(lab)]) == 0
    queue.wait_running_closed_circuit()

    redis.stop()
    redis.start()
    capsys.readouterr()
    assert main(["queue", "status", "--lab", str(lab)]) == 4
    assert "has lost this rig's queue" in capsys.readouterr().err
    assert main(["queue", "stop", "--now", "--lab", str(lab)]) == 0  # stopping is never refused
    queue.api.wait_for_condition(lambda status: status["re_state"] != "running", timeout=60)
    assert queue.cell_state()["circuit"] == "open"

    queue.stop()  # the way out: a restarted manager, with the empty queue Redis holds
    again = Queue(lab, PACE, directory / "rig-b.log").start(open_environment=False)
    queues.append(again)
    assert main(["queue", "status", "--lab", str(lab)]) == 0
    assert "0 queued, 0 in history" in capsys.readouterr().out
