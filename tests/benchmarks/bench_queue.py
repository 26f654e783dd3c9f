"""The queue's overhead per item, beside the same steps run by `labctl run`, in one run (issue 16).

One rig's RE Manager (``labctl queue serve`` on a private Redis, writing to an embedded data
server) runs a file of ``ITEMS`` one-minute rests on the simulated lab, paced so fast that the
plans themselves take milliseconds. From ``labctl queue start`` to an idle manager, minus the time
the worker spent inside the plans (queueserver's ``time_start``/``time_stop`` of each item), over
the number of items, is the queue's overhead per item. The same file run by ``labctl run`` into
the same server is printed beside it.

Run it with ``python -m pytest -m benchmark -s tests/benchmarks/bench_queue.py``.
"""

from __future__ import annotations

import contextlib
import io
import time

import pytest

pytest.importorskip("bluesky_queueserver")

from labctl.cli import main  # noqa: E402
from labctl.dataserver import DataServer  # noqa: E402
from tests.queue_servers import Queue, Redis, write_experiment, write_lab  # noqa: E402

ITEMS = 20
PACE = 1e6  # simulated seconds per wall second: a one-minute rest takes 60 us of pacing


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_queue_overhead_per_item_beside_labctl_run(tmp_path):
    redis = Redis(tmp_path).start()
    server = DataServer(tmp_path / "server", api_key="bench")
    queue = None
    try:
        lab = write_lab(tmp_path, "bench-rig", redis.port, server.uri)
        experiment = write_experiment(tmp_path, lab, "rests", [{"plan": "rest", "duration": "1 min"}] * ITEMS)
        queue = Queue(lab, PACE, tmp_path / "queue.log").start()

        began = time.perf_counter()
        assert main(["submit", str(experiment), "--queue", queue.address]) == 0
        submit_seconds = time.perf_counter() - began
        began = time.perf_counter()
        assert main(["queue", "start", "--queue", queue.address]) == 0
        queue.api.wait_for_condition(lambda s: s["manager_state"] == "idle" and s["items_in_queue"] == 0,
                                     timeout=1500)  # a status from before the start was idle too
        queue_seconds = time.perf_counter() - began
        items = queue.api.history_get(reload=True)["items"]
        assert [item["result"]["exit_status"] for item in items] == ["completed"] * ITEMS
        in_plans = sum(item["result"]["time_stop"] - item["result"]["time_start"] for item in items)

        began = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["run", str(experiment), "--data-dir", str(tmp_path / "direct")]) == 0, out.getvalue()
        run_seconds = time.perf_counter() - began
    finally:
        if queue is not None:
            queue.stop()
        server.close()
        redis.stop()

    overhead = (queue_seconds - in_plans) / ITEMS
    print(f"\n{ITEMS} one-minute rests on the simulated lab (pace {PACE:g}), stored in one embedded data server")
    print(f"{'':<44}{'wall s':>10}{'per item s':>12}")
    print(f"{'labctl submit (check + one batch)':<44}{submit_seconds:>10.2f}{submit_seconds / ITEMS:>12.3f}")
    print(f"{'queue: start to idle':<44}{queue_seconds:>10.2f}{queue_seconds / ITEMS:>12.3f}")
    print(f"{'  of which inside the plans (worker)':<44}{in_plans:>10.2f}{in_plans / ITEMS:>12.3f}")
    print(f"{'  queue overhead':<44}{queue_seconds - in_plans:>10.2f}{overhead:>12.3f}")
    print(f"{'labctl run of the same file':<44}{run_seconds:>10.2f}{run_seconds / ITEMS:>12.3f}")
    print(f"ratio queue / labctl run: {queue_seconds / run_seconds:.2f}")
