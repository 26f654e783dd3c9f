"""The journal: every document on local disk first, one newline-delimited JSON file per run."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from labctl.recovery import read_journal

logger = logging.getLogger(__name__)

# Journal durability. Every document is written and flushed to the OS at once, so a crash of
# this process loses nothing. fsync (surviving a power cut) costs 1-10 ms on an SSD, far more on
# SD cards or network disks, and an event-per-point plan can emit thousands of documents a second;
# so fsync always on the documents everything else depends on, and otherwise once 100 documents
# or 1 s have accumulated, whichever comes first. At the lab's real rates (a page or a reading
# every few seconds or minutes) that means every document is fsynced; in a burst a power cut
# loses at most 1 s or 100 documents.
FSYNC_DOCUMENTS = frozenset({"start", "stop", "descriptor", "resource", "stream_resource"})
FSYNC_EVERY_DOCS = 100
FSYNC_EVERY_SECONDS = 1.0


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy arrays become lists, numpy scalars Python numbers."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def local_iso(timestamp: float | None) -> str | None:
    """Local time with its UTC offset, to the second."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


class Journal:
    """Append-only local copy of every document: one newline-delimited JSON file per run.

    Each line is ``{"name": ..., "doc": ...}`` (the format of bluesky-tiled-plugins'
    ``JSONLinesWriter``), so a journal can be replayed into any document consumer.

    Parameters
    ----------
    directory : Path
        The journal directory; ``<start uid>.jsonl`` per run, ``<start uid>.pending`` while the
        run has not been confirmed delivered to the server.
    """

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.directory = Path(directory)
        if not read_only:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: dict[str, IO[str]] = {}
        self._run_of: dict[str, str] = {}  # descriptor / resource uid -> start uid
        self._unsynced: dict[str, int] = {}
        self._last_sync: dict[str, float] = {}
        self._current_run: str | None = None

    def path(self, run_uid: str) -> Path:
        """The journal file of a run."""
        return self.directory / f"{run_uid}.jsonl"

    def write(self, name: str, doc: dict) -> tuple[str | None, str]:
        """Append one document; return (start uid of its run or None, the JSON line written)."""
        line = json.dumps({"name": name, "doc": doc}, default=_jsonable)
        with self._lock:
            run_uid = self._route(name, doc)
            if run_uid is None:
                logger.warning("journal: %s document %s belongs to no open run", name, doc.get("uid"))
                self._append_unrouted(line)
                return None, line
            file = self._files.get(run_uid) or self._open(run_uid)
            file.write(line + "\n")
            file.flush()
            self._maybe_fsync(run_uid, name, file)
            if name == "stop":
                self._close_run(run_uid)
        return run_uid, line

    def _route(self, name: str, doc: dict) -> str | None:
        """The start uid a document belongs to; remembers descriptors and resources."""
        if name == "start":
            self._current_run = doc["uid"]
            return doc["uid"]
        if name in ("descriptor", "resource", "stream_resource"):
            run_uid = doc.get("run_start") or self._current_run
            self._run_of[doc["uid"]] = run_uid
            return run_uid
        if name == "stop":
            return doc.get("run_start")
        parent = doc.get("descriptor") or doc.get("resource") or doc.get("stream_resource")
        return self._run_of.get(parent, self._current_run)

    def _open(self, run_uid: str) -> IO[str]:
        file = open(self.path(run_uid), "a", encoding="utf-8")
        self._files[run_uid] = file
        self._unsynced[run_uid] = 0
        self._last_sync[run_uid] = time.monotonic()
        self.mark_pending(run_uid, "not yet confirmed by the server")
        # Make the new file's directory entry durable too.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return file

    def _maybe_fsync(self, run_uid: str, name: str, file: IO[str]) -> None:
        self._unsynced[run_uid] += 1
        now = time.monotonic()
        if (
            name in FSYNC_DOCUMENTS
            or self._unsynced[run_uid] >= FSYNC_EVERY_DOCS
            or now - self._last_sync[run_uid] >= FSYNC_EVERY_SECONDS
        ):
            os.fsync(file.fileno())
            self._unsynced[run_uid] = 0
            self._last_sync[run_uid] = now

    def _close_run(self, run_uid: str) -> None:
        self._files.pop(run_uid).close()
        self._unsynced.pop(run_uid, None)
        self._last_sync.pop(run_uid, None)
        self._run_of = {key: run for key, run in self._run_of.items() if run != run_uid}
        if self._current_run == run_uid:
            self._current_run = None

    def _append_unrouted(self, line: str) -> None:
        with open(self.directory / "unrouted.jsonl", "a", encoding="utf-8") as file:
            file.write(line + "\n")

    # ---- delivery state ----------------------------------------------------------------------
    def mark_pending(self, run_uid: str, reason: str) -> None:
        """Record that a run is not (or not completely) in the server, and why."""
        marker = self.directory / f"{run_uid}.pending"
        marker.write_text(json.dumps({"uid": run_uid, "reason": reason, "time": local_iso(time.time())}) + "\n")

    def mark_delivered(self, run_uid: str) -> None:
        """Remove the pending marker of a run the server has confirmed."""
        (self.directory / f"{run_uid}.pending").unlink(missing_ok=True)

    def pending(self) -> dict[str, str]:
        """Runs not confirmed delivered: start uid -> reason."""
        found = {}
        for marker in sorted(self.directory.glob("*.pending")):
            try:
                found[marker.stem] = json.loads(marker.read_text())["reason"]
            except (OSError, ValueError, KeyError):
                found[marker.stem] = "unreadable marker"
        return found

    def read(self, run_uid: str, limit: int | None = None) -> list[tuple[str, dict]]:
        """The documents of a run (from the first ``limit`` lines), in the order they were written.

        Lines that are not journal lines (a last line cut short by a crash, garbage) are left out
        and logged; :func:`labctl.recovery.repair_journal` sets them aside for good.
        """
        contents = read_journal(self.path(run_uid), limit)
        for number, _ in contents.damaged:
            logger.warning("journal %s:%d: not a journal line; left out", self.path(run_uid), number)
        return contents.documents

    def open_runs(self) -> set[str]:
        """Runs this journal is still writing (started, not stopped)."""
        with self._lock:
            return set(self._files)

    def close(self) -> None:
        """fsync and close the files of runs still open (a run interrupted by closing)."""
        with self._lock:
            for file in self._files.values():
                file.flush()
                os.fsync(file.fileno())
                file.close()
            self._files.clear()

