"""The lab of two rigs in configs/lab-two-rigs/: a queue per rig, one Redis, one data server, all on loopback.

The data server is the lab's: ``labctl serve --postgres`` on a private PostgreSQL cluster, each rig
writing with its own API key, the runs read back with a viewer's (read-only) key.

Experiments are submitted to each rig's queue and run on the simulated lab. On rig-a, files whose
steps fail: a failed step stops the rest of its own file, and the file queued behind it runs.
Every run is read back from the one data server with the stock tiled client, found by its rig,
its start document carrying its item's sequence, file, step and cell; each run's end alert
arrives on a loopback endpoint (apprise json://) named by its rig.
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
from tests.test_dataserver_postgres import Postgres, Serving, add_key, needs_postgres  # noqa: E402
from tests.test_queue_live import PACE  # noqa: E402

TWO_RIGS = Path(__file__).parent.parent / "configs" / "lab-two-rigs"
RIGS = ("rig-a", "rig-b")
SEQUENCE_KEYS = ("sequence_id", "experiment", "experiment_file", "step_index", "step_label", "repeat_index")
# Plating at 100 mA/cm^2 through a 2 mm electrode reaches the potentiostat's voltage limit within
# minutes (on a fresh worker's simulated cell): the run ends as failed without raising, as
# `labctl check`'s dry run predicts.
FAILING = {"plan": "plate", "current_density": "100 mA/cm^2", "max_duration": "10 min", "geis_interval": "30 min"}


def rig_file(directory: Path, rig: str, redis_port: int, uri: str, alerts_url: str) -> Path:
    """configs/lab-two-rigs/RIG.yaml with this test's ports, data server (``uri``, with the rig's key) and alert endpoint."""
    lab = yaml.safe_load((TWO_RIGS / f"{rig}.yaml").read_text())
    assert lab["name"] == rig and lab["queue"]["redis"] == "127.0.0.1:6379" and lab["storage"]["uri"]
    lab["storage"] = {"data_dir": str(directory / rig), "uri": uri}
    lab["queue"].update(address=f"tcp://127.0.0.1:{free_port()}", info_address=f"tcp://127.0.0.1:{free_port()}",
                        redis=f"127.0.0.1:{redis_port}")  # one Redis for both: kept apart by the rig's name
    lab["alerts"]["urls"] = {"lab": alerts_url}
    path = directory / f"{rig}.yaml"
    path.write_text(yaml.safe_dump(lab))
    (directory / rig).mkdir()
    return path


@needs_postgres
@pytest.mark.timeout(900)  # two RE Managers, their workers, PostgreSQL and a data server, on a loaded 2-core machine
def test_two_rigs_each_with_its_queue_write_to_one_data_server(tmp_path):
    from tiled.client import from_uri
    from tiled.queries import Eq

    from labctl.config import load_lab

    for rig in RIGS:  # the example files load as they are
        assert load_lab(TWO_RIGS / f"{rig}.yaml").name == rig
    redis = Redis(tmp_path).start()
    cluster = Postgres().start()
    keys = {name: add_key(cluster.address, name, *flags) for name, flags in
            (("rig-a", ()), ("rig-b", ()), ("lab", ("--read-only",)))}
    port = free_port()
    server = Serving(cluster.address, tmp_path / "server", port)
    endpoint = Endpoint()
    queues = []
    try:
        labs = [rig_file(tmp_path, rig, redis.port, f"http://127.0.0.1:{port}/api/v1?api_key={keys[rig]}", endpoint.url)
                for rig in RIGS]
        queues = [Queue(lab, PACE, tmp_path / f"{lab.stem}.log") for lab in labs]
        with ThreadPoolExecutor(2) as pool:  # both managers start at once
            list(pool.map(Queue.start, queues))
        rest = {"plan": "rest", "duration": "1 min"}
        files = {"rig-a": {"fails-second": [rest, FAILING, rest], "fails-first": [FAILING, rest], "behind": [rest, rest]},
                 "rig-b": {"other-rig": [{"plan": "rest", "duration": "5 min", "sample_interval": "10 s"},
                                         {"plan": "set_pressure", "pressure": "3 MPa"}]}}
        for rig, lab, queue in zip(RIGS, labs, queues):
            for name, steps in files[rig].items():
                experiment = write_experiment(tmp_path, lab, name, steps, cell_id=f"CELL-{name}")
                assert main(["submit", str(experiment), "--queue", queue.address]) == 0
        assert [len(queue.api.queue_get()["items"]) for queue in queues] == [7, 2]  # each queue has its own items
        for queue in queues:
            assert main(["queue", "start", "--queue", queue.address]) == 0
        for queue in queues:  # idle with its queue empty: a status from before the start was idle too
            queue.api.wait_for_condition(lambda s: s["manager_state"] == "idle" and s["items_in_queue"] == 0,
                                         timeout=300)
        history = {rig: queue.api.history_get(reload=True)["items"] for rig, queue in zip(RIGS, queues)}
        ended = {rig: [(item["meta"]["experiment"], item["meta"]["step_index"], item["result"]["exit_status"])
                       for item in items] for rig, items in history.items()}
        assert ended == {"rig-a": [("fails-second", 0, "completed"), ("fails-second", 1, "failed"),
                                   ("fails-second", 2, "failed"), ("fails-first", 0, "failed"),
                                   ("fails-first", 1, "failed"), ("behind", 0, "completed"), ("behind", 1, "completed")],
                         "rig-b": [("other-rig", 0, "completed"), ("other-rig", 1, "completed")]}
        skipped = [history["rig-a"][i]["result"] for i in (2, 4)]
        assert "voltage limit" in history["rig-a"][1]["result"]["msg"]
        assert [result["msg"].split(": step ")[0][-7:] for result in skipped] == ["skipped"] * 2, skipped
        assert all("voltage limit" in result["msg"] for result in skipped), skipped
        assert all(result["run_uids"] == [] for result in skipped)  # skipped before it touched an instrument
        assert all(queue.api.queue_get(reload=True)["items"] == [] for queue in queues)

        runs = from_uri(f"http://127.0.0.1:{port}", api_key=keys["lab"])["runs"]  # the viewers' key
        try:
            for rig, items in history.items():
                uids = {uid for item in items for uid in item["result"]["run_uids"]}
                assert len(uids) == {"rig-a": 5, "rig-b": 2}[rig]  # one run per step that ran
                for _ in range(600):  # bounded: each look is a request to the server; a run is in once it has its stop
                    found = set(runs.search(Eq("start.lab", rig)))
                    if found >= uids and all("stop" in runs[uid].metadata for uid in uids):
                        break
                assert found == uids, f"{rig}: the server holds {sorted(found)}, the queue ran {sorted(uids)}"
                for item in items:
                    meta = item["meta"]
                    for uid in item["result"]["run_uids"]:
                        run = runs[uid]
                        start = run.metadata["start"]
                        assert start["lab"] == rig and start["cell"]["id"] == f"CELL-{meta['experiment']}"
                        assert {key: start[key] for key in SEQUENCE_KEYS} == {key: meta[key] for key in SEQUENCE_KEYS}
                        assert start["experiment_file"] == str(tmp_path / f"{meta['experiment']}.yaml")
                        exit_status = "fail" if item["result"]["exit_status"] == "failed" else "success"
                        assert run.metadata["stop"]["exit_status"] == exit_status
                        assert sum(run[stream].read().sizes["time"] for stream in run) > 0
            behind = runs.search(Eq("start.cell.id", "CELL-behind")).search(Eq("start.plan_name", "rest"))
            assert len(behind) == 2  # found by cell and plan, as by rig
        finally:
            runs.context.close()

        titles = []  # the alerts, until every run's end has come (each take waits for the next, bounded)
        while sum(" experiment_end: " in title for title in titles) < 7:
            titles.append(endpoint.take()["title"])
        ends = sorted(title.split()[0] for title in titles if " experiment_end: " in title)
        assert ends == ["[rig-a]"] * 5 + ["[rig-b]"] * 2, titles
        # Besides: the compliance guard of the files (plating-overnight's) ending each plating at the voltage limit.
        assert {tuple(title.split()[:2]) for title in titles if " experiment_end: " not in title} <= \
            {("[rig-a]", "guard_end:")}, titles
    finally:
        for queue in queues:
            queue.stop()
        endpoint.close()
        server.stop()
        cluster.stop()
        redis.stop()
