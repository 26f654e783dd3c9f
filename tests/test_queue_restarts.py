"""What bit other facilities: the RE Manager restarted (Redis keeps its queue)."""

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
