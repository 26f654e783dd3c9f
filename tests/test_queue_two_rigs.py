"""The lab of two rigs in configs/lab-two-rigs/: a queue per rig, one Redis, one data server, all on loopback.

One experiment is submitted to each rig's queue; both run on the simulated lab; every run is read
back from the one data server with the stock tiled client, found by its rig, and each rig's
experiment-end alert arrives on a loopback endpoint (apprise json://) named by its rig.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

pytest.importorskip("bluesky_queueserver")

from labctl.cli import main  # noqa: E402
from tests.queue_servers import Queue, Redis, free_port, write_experiment  # noqa: E402
from tests.test_alerts import Endpoint  # noqa: E402
from tests.test_queue_live import PACE  # noqa: E402

TWO_RIGS = Path(__file__).parent.parent / "configs" / "lab-two-rigs"
RIGS = ("rig-a", "rig-b")


def rig_file(directory: Path, rig: str, redis_port: int, server, alerts_url: str) -> Path:
    """configs/lab-two-rigs/RIG.yaml with this test's ports, data server and alert endpoint; nothing else changed."""
    lab = yaml.safe_load((TWO_RIGS / f"{rig}.yaml").read_text())
    assert lab["name"] == rig and lab["queue"]["redis"] == "127.0.0.1:6379" and lab["storage"]["uri"]
    lab["storage"] = {"data_dir": str(directory / rig), "uri": server.uri}
    lab["queue"].update(address=f"tcp://127.0.0.1:{free_port()}", info_address=f"tcp://127.0.0.1:{free_port()}",
                        redis=f"127.0.0.1:{redis_port}")  # one Redis for both: kept apart by the rig's name
    lab["alerts"]["urls"] = {"lab": alerts_url}
    path = directory / f"{rig}.yaml"
    path.write_text(yaml.safe_dump(lab))
    (directory / rig).mkdir()
    return path


@pytest.mark.timeout(900)  # two RE Managers, their workers and a data server, on a loaded 2-core machine
def test_two_rigs_each_with_its_queue_write_to_one_data_server(tmp_path):
    from tiled.client import from_uri
    from tiled.queries import Eq

    from labctl.config import load_lab
    from labctl.dataserver import DataServer

    for rig in RIGS:  # the example files load as they are
        assert load_lab(TWO_RIGS / f"{rig}.yaml").name == rig
    redis = Redis(tmp_path).start()
    server = DataServer(tmp_path / "server", api_key="secret")
    endpoint = Endpoint()
    queues = []
    try:
        labs = [rig_file(tmp_path, rig, redis.port, server, endpoint.url) for rig in RIGS]
        queues = [Queue(lab, PACE, tmp_path / f"{lab.stem}.log") for lab in labs]
        with ThreadPoolExecutor(2) as pool:  # both managers start at once
            list(pool.map(Queue.start, queues))
        steps = {"rig-a": [{"plan": "rest", "duration": "10 min", "sample_interval": "10 s"}],
                 "rig-b": [{"plan": "rest", "duration": "5 min", "sample_interval": "10 s"},
                           {"plan": "set_pressure", "pressure": "3 MPa"}]}
        for rig, lab, queue in zip(RIGS, labs, queues):
            experiment = write_experiment(tmp_path, lab, f"exp-{rig}", steps[rig], cell_id=f"CELL-{rig}")
            assert main(["submit", str(experiment), "--queue", queue.address]) == 0
        assert [len(queue.api.queue_get()["items"]) for queue in queues] == [1, 2]  # each queue has its own items
        for queue in queues:
            assert main(["queue", "start", "--queue", queue.address]) == 0
        for queue in queues:
            queue.api.wait_for_idle(timeout=300)
        history = {rig: queue.api.history_get(reload=True)["items"] for rig, queue in zip(RIGS, queues)}
        assert {rig: [item["result"]["exit_status"] for item in items] for rig, items in history.items()} == \
               {"rig-a": ["completed"], "rig-b": ["completed", "completed"]}

        runs = from_uri(f"http://127.0.0.1:{server.port}", api_key=server.api_key)["runs"]
        try:
            for rig, items in history.items():
                uids = {uid for item in items for uid in item["result"]["run_uids"]}
                assert len(uids) == len(items)
                for _ in range(600):  # bounded: each look is a request to the server; a run is in once it has its stop
                    found = set(runs.search(Eq("start.lab", rig)))
                    if found >= uids and all("stop" in runs[uid].metadata for uid in uids):
                        break
                assert found == uids, f"{rig}: the server holds {sorted(found)}, the queue ran {sorted(uids)}"
                for uid in uids:
                    run = runs[uid]
                    start = run.metadata["start"]
                    assert start["lab"] == rig and start["cell"]["id"] == f"CELL-{rig}"
                    assert start["experiment"] == f"exp-{rig}" and run.metadata["stop"]["exit_status"] == "success"
                    assert sum(run[stream].read().sizes["time"] for stream in run) > 0
        finally:
            runs.context.close()

        alerts = sorted(endpoint.take()["title"].split()[0] for _ in range(3))  # one per run's end
        assert alerts == ["[rig-a]", "[rig-b]", "[rig-b]"]
    finally:
        for queue in queues:
            queue.stop()
        endpoint.close()
        server.close()
        redis.stop()
