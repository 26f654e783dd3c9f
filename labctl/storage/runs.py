"""Reading runs back: the catalog node of runs, runs with missing asset files, run summaries."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from labctl.core.errors import StorageError
from labctl.storage.journal import local_iso

#: Child node of the tiled root that holds the runs; it carries the spec that makes the tiled
#: client a ``CatalogOfBlueskyRuns`` (uid/scan_id lookup, bluesky queries).
RUNS_NODE = "runs"
CATALOG_SPEC = ("CatalogOfBlueskyRuns", "3.0")


class CheckedRun:
    """A ``BlueskyRun`` whose streams with a missing asset file are set apart, not read into a traceback.

    Iterating gives the streams that can be read; ``missing`` maps each other stream to the files
    it lacks, and ``run[stream]`` of one raises :class:`StorageError` naming them. Everything
    else (``start``, ``stop``, ``metadata``...) is the run's own.
    """

    def __init__(self, run):
        self._run = run
        self.missing: dict[str, list[str]] = {}
        for name in run:
            files = missing_files(run[name])
            if files:
                self.missing[name] = files

    def __iter__(self):
        return (name for name in self._run if name not in self.missing)

    def __contains__(self, name) -> bool:
        return name in self._run and name not in self.missing

    def __getitem__(self, name):
        if name in self.missing:
            raise StorageError(", ".join(self.missing[name]), f"missing: the {name} stream of run "
                               f"{self._run.start['uid'][:8]} cannot be read",
                               "restore the file from a backup or a copy of the data directory")
        return self._run[name]

    def __getattr__(self, attribute):
        return getattr(self._run, attribute)


def missing_files(stream) -> list[str]:
    """The local files a stream's external arrays point at that are not there (remote ones are not checked)."""
    missing = set()
    try:
        # A composite stream's own values() costs ~3 requests per column (339 for impedance_fit);
        # its base container lists the same array nodes, data sources included, in one or two.
        children = list(getattr(stream, "base", stream).values())
    except Exception:
        return []
    for child in children:
        try:
            sources = child.data_sources() or []
        except Exception:
            continue
        for source in sources:
            if getattr(source, "management", None) != "external":
                continue
            for asset in source.assets:
                url = urlparse(asset.data_uri)
                path = Path(url.path)
                if url.scheme == "file" and path.parent.is_dir() and not path.exists():
                    missing.add(str(path))
    return sorted(missing)


def summary(metadata: dict) -> dict:
    """One run's summary (uid, plan, cell, start, exit status, reason, events, result)."""
    start, stop = metadata.get("start") or {}, metadata.get("stop") or {}
    cell = start.get("cell")
    return {
        "uid": start.get("uid"),
        "plan_name": start.get("plan_name"),
        "cell_id": cell.get("id") if isinstance(cell, dict) else None,
        "start": local_iso(start.get("time")),
        "exit_status": stop.get("exit_status"),
        "reason": stop.get("reason") if stop else None,
        "num_events": stop.get("num_events") if stop else None,
        "result": stop.get("result") if stop else None,  # the plan's result event (labctl.session.LabRunEngine)
    }
