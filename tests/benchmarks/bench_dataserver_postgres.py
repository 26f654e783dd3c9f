"""Live rows/s into the lab's data server on PostgreSQL, beside the SQLite one, in one run (issue 16).

The same day of potentiostat pages as ``bench_storage.py`` (86,400 rows x 4 fields, pages of 900)
goes live (one upload per field per page, as on real hardware) into (1) a ``tiled serve catalog``
server with SQLite tables (:class:`labctl.dataserver.StandaloneServer`) and (2) ``labctl serve
--postgres`` on a private PostgreSQL cluster, with a rig's API key. Each is timed from the start of
the plan until ``storage.flush()`` says everything is in the server, then read back and compared
row for row. The servers' start is not timed.

Run it with ``python -m pytest -m benchmark -s tests/benchmarks/bench_dataserver_postgres.py``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from labctl.dataserver import StandaloneServer
from labctl.storage import Storage
from tests.benchmarks.bench_storage import DAY_ROWS, FIELDS, PAGE_ROWS, PagedPotentiostat, day_of_rows, pages_plan, timed_run
from tests.test_dataserver_postgres import Postgres, Serving, add_key, needs_postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_day(folder: Path, uri: str, rows: dict[str, np.ndarray]) -> float:
    """Seconds to store the day live into the server at ``uri``; the rows are checked after the timing."""
    storage = Storage.open(folder, uri, live=True, writer="benchmark")
    try:
        uid, seconds = timed_run(storage, pages_plan(PagedPotentiostat(storage.assets_dir, rows, PAGE_ROWS),
                                                     -(-DAY_ROWS // PAGE_ROWS)))
        stored = storage.catalog[uid]["potentiostat"].read()
        for field in FIELDS:
            np.testing.assert_array_equal(stored[f"potentiostat_{field}"].values, rows[field])
    finally:
        storage.close()
    return seconds


@needs_postgres
@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_live_rows_per_second_into_the_postgres_data_server_beside_sqlite(tmp_path):
    rows = day_of_rows()
    sqlite_server = StandaloneServer(tmp_path / "sqlite-server", free_port())
    sqlite_server.start()
    try:
        sqlite_seconds = live_day(tmp_path / "rig-sqlite", sqlite_server.uri, rows)
    finally:
        sqlite_server.close()

    cluster = Postgres().start()
    try:
        key = add_key(cluster.address, "rig-bench")
        port = free_port()
        serving = Serving(cluster.address, tmp_path / "pg-server", port)
        try:
            postgres_seconds = live_day(tmp_path / "rig-pg", f"http://127.0.0.1:{port}/api/v1?api_key={key}", rows)
        finally:
            serving.stop()
    finally:
        cluster.stop()

    print(f"\nlive: {DAY_ROWS:,} rows x {len(FIELDS)} fields in pages of {PAGE_ROWS}, one upload per field per page")
    print(f"{'server':<36}{'wall s':>10}{'rows/s':>12}")
    for name, seconds in (("tiled serve catalog, SQLite tables", sqlite_seconds),
                          ("labctl serve --postgres", postgres_seconds)):
        print(f"{name:<36}{seconds:>10.2f}{DAY_ROWS / seconds:>12,.0f}")
    print(f"ratio PostgreSQL / SQLite (rows/s): {sqlite_seconds / postgres_seconds:.2f}")
