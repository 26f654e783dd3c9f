"""``labctl serve`` under concurrent writers and readers of one table (the overnight crash).

A paced run wrote its rows through ``labctl serve`` while the dashboard read them, and the server
died with ``malloc(): unsorted double linked list corrupted`` after ADBC "No active transaction"
errors: tiled gives DuckDB one shared connection (a StaticPool) used from every worker thread.
The server runs as a subprocess so that a crash fails the test instead of killing pytest; the
load is a fixed number of appends and reads, not a duration.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
import stamina

from tests.queue_servers import free_port

LABCTL = [sys.executable, "-m", "labctl.cli"]
API_KEY = secrets.token_hex(32)  # tiled refuses weak keys
SCHEMA = pa.schema([("writer", pa.int64()), ("seq", pa.int64()), ("value", pa.float64())])


def serve(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """Start ``labctl serve`` and return once it says it serves (it prints after /healthz answers)."""
    port = free_port()
    with log.open("wb") as stderr:
        process = subprocess.Popen([*LABCTL, "serve", str(data_dir), "--port", str(port), "--api-key", API_KEY],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = process.stdout.readline()
    if not line.startswith("serving"):
        stop(process)
        raise AssertionError(f"labctl serve did not start: {line!r} {log.read_text()[-2000:]}")
    return process, f"http://127.0.0.1:{port}"


def hammer(uri: str, writers: int, appends: int, readers: int, reads: int) -> tuple[list[str], object]:
    """Append ``appends`` one-row batches from each writer thread while reader threads read.

    Returns the failed requests and the table as read at the end (None if that failed too).
    """
    from tiled.client import from_uri

    root = from_uri(uri, api_key=API_KEY)
    root.create_appendable_table(SCHEMA, key="stream")
    errors: list[str] = []
    clients = [root]  # closed together at the end (closing one early closes a context the others share)

    def write(writer: int) -> None:
        table = from_uri(uri, api_key=API_KEY)["stream"]
        clients.append(table)
        for seq in range(appends):
            try:
                table.append_partition(0, pa.table({"writer": [writer], "seq": [seq], "value": [seq * 0.5]},
                                                   schema=SCHEMA))
            except Exception as error:  # the server's 500 or a dropped connection: record, go on
                errors.append(f"append {writer}/{seq}: {type(error).__name__}: {str(error)[:200]}")

    def read(reader: int) -> None:
        table = from_uri(uri, api_key=API_KEY)["stream"]
        clients.append(table)
        for n in range(reads):
            try:
                table.read()
            except Exception as error:
                errors.append(f"read {reader}/{n}: {type(error).__name__}: {str(error)[:200]}")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    threads += [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        rows = root["stream"].read()
    except Exception as error:
        rows = None
        errors.append(f"final read: {type(error).__name__}: {str(error)[:200]}")
    for client in clients:
        client.context.close()
    return errors, rows


def stop(process: subprocess.Popen) -> int | str | None:
    """SIGTERM the server if it still runs: its exit code if it had already died, "hung" if it ignores SIGTERM."""
    died = process.poll()
    if died is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # deadlocked (seen on DuckDB): SIGKILL it, and say so
            process.kill()
            process.wait(timeout=60)
            died = "hung"
    process.stdout.close()
    return died


@pytest.mark.parametrize("writers, readers", [(1, 3), (4, 4)])
def test_concurrent_appends_and_reads_of_one_table(tmp_path, writers, readers):
    appends, reads = 40, 30
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    data_dir.mkdir()
    process, uri = serve(data_dir, log)
    try:
        with stamina.set_testing(True, attempts=1):  # a dead server fails a request at once, no backoff
            errors, rows = hammer(uri, writers, appends, readers, reads)
    finally:
        died = stop(process)
    assert died is None, f"labctl serve died or hung (exit {died}): {log.read_text(errors='replace')[-2000:]}"
    assert errors == [], f"{len(errors)} failed requests, first: {errors[:3]}"
    assert len(rows) == writers * appends
    for writer in range(writers):  # every writer's rows, each once, in its own order
        assert list(rows[rows["writer"] == writer]["seq"]) == list(range(appends))


@pytest.mark.parametrize("present", [(), ("storage.sqlite",), ("storage.duckdb",), ("storage.sqlite", "storage.duckdb")])
def test_the_table_file_is_sqlite_unless_only_duckdb_exists(tmp_path, present):
    from labctl.dataserver import standalone_command, table_file

    for name in present:
        (tmp_path / name).touch()
    expected = "storage.duckdb" if present == ("storage.duckdb",) else "storage.sqlite"
    assert table_file(tmp_path) == tmp_path / expected
    command = standalone_command(tmp_path, api_key=API_KEY)
    scheme = "duckdb" if expected.endswith("duckdb") else "sqlite"
    assert f"{scheme}://localhost/{tmp_path / expected}" in command


def write_and_read(data_dir: Path, rows: int) -> list[int]:
    """Append ``rows`` rows to table ``t`` (created if absent) through a DataServer; all its ``seq``."""
    from tiled.client import from_uri

    from labctl.dataserver import DataServer

    server = DataServer(data_dir, api_key=API_KEY)
    try:
        root = from_uri(f"http://127.0.0.1:{server.port}", api_key=API_KEY)
        existed = "t" in root
        if not existed:
            root.create_appendable_table(SCHEMA, key="t")
        start = len(root["t"].read()) if existed else 0
        for seq in range(start, start + rows):
            root["t"].append_partition(0, pa.table({"writer": [0], "seq": [seq], "value": [0.0]}, schema=SCHEMA))
        seqs = list(root["t"].read()["seq"])
        root.context.close()
        return seqs
    finally:
        server.close()


def test_a_data_directory_with_duckdb_tables_stays_readable_and_writable_when_moved(tmp_path):
    import duckdb

    data_dir = tmp_path / "old"
    (data_dir / "tiled").mkdir(parents=True)
    duckdb.connect(str(data_dir / "tiled" / "storage.duckdb")).close()  # as labctl made them before
    assert write_and_read(data_dir, 3) == [0, 1, 2]
    moved = tmp_path / "moved"
    data_dir.rename(moved)
    assert write_and_read(moved, 2) == [0, 1, 2, 3, 4]  # relocated: the DuckDB URI now points here
    assert not (moved / "tiled" / "storage.sqlite").exists()


def test_a_new_data_directory_keeps_its_tables_in_sqlite_in_wal_mode(tmp_path):
    import sqlite3

    data_dir = tmp_path / "new"
    data_dir.mkdir()
    assert write_and_read(data_dir, 2) == [0, 1]
    assert not (data_dir / "tiled" / "storage.duckdb").exists()
    with contextlib.closing(sqlite3.connect(data_dir / "tiled" / "storage.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    moved = tmp_path / "moved"
    data_dir.rename(moved)
    assert write_and_read(moved, 1) == [0, 1, 2]
