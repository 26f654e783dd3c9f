"""Listing a data directory's runs without a tiled server: its SQLite catalog and its journal, read-only."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from labctl.dataserver import catalog_path
from labctl.locks import WRITER_LOCK, describe_holder, live_holder
from labctl.storage.journal import Journal
from labctl.storage.runs import RUNS_NODE, summary

# Listing runs needs only their start and stop documents, which tiled keeps as JSON in the nodes of
# its SQLite catalog. Reading them with sqlite3 takes milliseconds; starting tiled (importing its
# server, dask and pandas, then a server thread) takes seconds. tiled is pinned to 0.2.x, whose
# schema this reads; tests/test_cli.py checks the result against Storage.runs() on the same runs.
RUNS_QUERY = """
SELECT run.metadata FROM nodes AS run JOIN nodes AS catalog ON run.parent = catalog.id
WHERE catalog.parent = (SELECT id FROM nodes WHERE parent IS NULL) AND catalog.key = ?
ORDER BY json_extract(run.metadata, '$.start.time') DESC, run.id
"""


def catalog_file_runs(data_dir: Path, limit: int | None = None) -> list[dict] | None:
    """Summaries of the runs in ``data_dir``'s tiled catalog, newest first, as :meth:`Storage.runs` gives them.

    Read with sqlite3 (read-only; a live server writing meanwhile is fine). None when the catalog
    cannot be read this way (a tiled whose schema differs): the caller goes through tiled then.
    """

    path = catalog_path(data_dir)
    if not path.exists():
        return []  # nothing was ever delivered to a server: the journal has the runs (pending)
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)) as db:
            query = RUNS_QUERY + ("" if limit is None else f" LIMIT {int(limit)}")
            rows = db.execute(query, (RUNS_NODE,)).fetchall()
    except sqlite3.Error:
        return None
    return [summary(json.loads(metadata)) for (metadata,) in rows]


def pending_runs(data_dir: Path) -> dict[str, str]:
    """:meth:`Storage.pending` without opening the storage: runs whose journal is not (all) in the server."""

    journal_dir = data_dir / "journal"
    if not journal_dir.exists():
        return {}
    found = Journal(journal_dir, read_only=True).pending()
    holder = live_holder(data_dir / WRITER_LOCK)
    for uid in set(holder.get("runs", []) if holder else ()) & set(found):
        found[uid] = f"being written by {describe_holder(holder)} (it delivers it itself)"
    return found


