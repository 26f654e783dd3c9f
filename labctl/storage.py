"""Where runs go: a journal on local disk first, then databroker (tiled) in the background.

``Storage.open(data_dir)`` starts an embedded tiled server whose catalog (SQLite) lives in
``data_dir/tiled``, so runs persist across processes; ``Storage.open(data_dir, uri)`` uses a
remote one instead. Subscribe ``storage.callback`` to a RunEngine: every document is first
appended to ``data_dir/journal/<start uid>.jsonl`` (flushed at once), then handed to a
background thread that feeds it to ``bluesky_tiled_plugins.TiledWriter``. A slow or dead server
therefore never stalls or breaks the RunEngine. While a run is not yet (completely) in the
server it keeps a ``<start uid>.pending`` marker next to its journal, which holds every document;
when the server goes away, delivery retries with backoff and catches each run up from its
journal when the server is back.

Devices with long time series write them as HDF5 pages under ``storage.assets_dir`` (see
:mod:`labctl.assets`); the server reads those files in place.

Reading a run back as xarray, in two lines::

    storage = Storage.open("data")                   # or Storage.open("data", "http://host:8000/api/v1?api_key=...")
    ds = storage.catalog[uid]["primary"].read()      # xarray.Dataset; run.primary.read() works too

Runs the server missed (the process ended during an outage, or died mid-run) stay in the
journal with a ``.pending`` marker; ``storage.recover()`` (``labctl recover``) writes them in
from the journal (see :mod:`labctl.recovery`).

Finding runs: ``storage.runs()`` (summaries, newest first), ``storage.search_cell("LLZO-7")``
(a catalog node of that cell's runs), ``storage.catalog.search(Key("start.plan_name") == "plate")``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import numpy as np

from labctl.errors import StorageError
from labctl.locks import SERVER_STATE, Lock, live_holder, server_lock, writer_lock
from labctl.recovery import append_to_journal, complete_run, read_journal, repair_journal, set_aside_journal

logger = logging.getLogger(__name__)

#: Child node of the tiled root that holds the runs; it carries the spec that makes the tiled
#: client a ``CatalogOfBlueskyRuns`` (uid/scan_id lookup, bluesky queries).
RUNS_NODE = "runs"
CATALOG_SPEC = ("CatalogOfBlueskyRuns", "3.0")

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

# How many events (or stream rows) TiledWriter gathers per stream before writing them. Live: on
# the real lab documents arrive minutes apart and each is written at once, so the catalog shows a
# running experiment (~40-200 ms a write). Not live: a simulated day arrives within seconds; each
# stream is written once, at the run's stop (tests/benchmarks/bench_plating.py: a 24 h plating run
# takes ~30 s wall written live, ~4.6 s batched). The journal is written at once either way.
LIVE_BATCH_SIZE = 1
BULK_BATCH_SIZE = 10_000_000

# When the server fails a write (after tiled's own retries, up to ~45 s), the run falls behind
# and delivery tries again after RETRY_AFTER seconds, doubling up to RETRY_MAX: an outage of any
# length is caught up within RETRY_MAX of the server's return.
RETRY_AFTER = 1.0
RETRY_MAX = 30.0


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy arrays become lists, numpy scalars Python numbers."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _iso(timestamp: float | None) -> str | None:
    """Local time with its UTC offset, to the second."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


# ---- journal ----------------------------------------------------------------------------------
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
        marker.write_text(json.dumps({"uid": run_uid, "reason": reason, "time": _iso(time.time())}) + "\n")

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


# ---- delivery ---------------------------------------------------------------------------------
_STOP = object()


def coalesce_stream_datums(items: list[tuple[str | None, str, str]]) -> list[tuple[str | None, str, dict]]:
    """Parse queued (run uid, name, JSON line) items, merging stream datums that continue each other.

    Every stream datum the ``TiledWriter`` receives costs one request to the server (tens of ms).
    When the server keeps up, the queue holds one document at a time and each page is delivered
    as soon as it is collected; when it falls behind (a burst, a slow server), the pages that
    piled up meanwhile go over as one range per field. A merged datum takes the place of the
    first one it absorbs, which already follows its stream resource and descriptor; documents of
    other kinds keep their order.
    """
    merged: list[tuple[str | None, str, dict]] = []
    open_datums: dict[str, int] = {}  # stream_resource uid -> position in `merged`
    for run_uid, name, line in items:
        doc = json.loads(line)["doc"]
        if name == "stream_datum":
            position = open_datums.get(doc["stream_resource"])
            if position is not None and _continues(merged[position][2], doc):
                merged[position] = (run_uid, name, _joined(merged[position][2], doc))
                continue
            open_datums[doc["stream_resource"]] = len(merged)
        merged.append((run_uid, name, doc))
    return merged


def _continues(first: dict, second: dict) -> bool:
    return (
        first["descriptor"] == second["descriptor"]
        and first["indices"]["stop"] == second["indices"]["start"]
        and first["seq_nums"]["stop"] == second["seq_nums"]["start"]
    )


def _joined(first: dict, second: dict) -> dict:
    return {
        **second,
        "indices": {"start": first["indices"]["start"], "stop": second["indices"]["stop"]},
        "seq_nums": {"start": first["seq_nums"]["start"], "stop": second["seq_nums"]["stop"]},
    }


class _Delivery:
    """A thread that feeds journaled documents to one ``TiledWriter`` per run, through outages.

    When a write fails (the server is down, slow past tiled's own retries, or refuses a
    document), the run falls *behind*: it is marked pending in the journal, its later documents
    are only counted, and the thread retries with exponential backoff (``retry_after`` doubling
    up to ``retry_max``). A retry catches the run up from its journal: the partial copy in the
    server is deleted and every document the thread has seen so far is written again with a
    fresh writer, which then takes the run's next documents live. The RunEngine never waits for
    any of this (it only appends to the journal and the queue).
    """

    def __init__(self, connect, journal: Journal, batch_size: int) -> None:
        self._connect = connect  # () -> tiled client of the runs node, include_data_sources
        self._journal = journal
        self._batch_size = batch_size
        self._client = None
        self._writers: dict[str, Any] = {}
        self._seen: dict[str, int] = {}  # run uid -> documents taken off the queue so far
        self.behind: dict[str, str] = {}  # run uid -> why its server copy is behind the journal
        self._retry_after, self._retry_max = RETRY_AFTER, RETRY_MAX
        self._backoff = RETRY_AFTER
        self._next_retry = 0.0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._outstanding = 0
        self._idle = threading.Condition()
        # A daemon thread: if the interpreter exits while the server hangs, do not hang with it;
        # everything undelivered is in the journal.
        self._thread = threading.Thread(target=self._loop, name="labctl-storage-delivery", daemon=True)
        self._thread.start()

    def submit(self, run_uid: str | None, name: str, line: str) -> None:
        with self._idle:
            self._outstanding += 1
        self._queue.put((run_uid, name, line))

    def wait(self, timeout: float) -> bool:
        """Wait until every submitted document is in the server; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0 and not self.behind, timeout)

    def stop(self, timeout: float) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def close_client(self) -> None:
        if self._client is not None:
            self._client.context.close()
            self._client = None

    def _loop(self) -> None:
        while True:
            batch = self._take_waiting()
            self._retry_behind()
            items = [item for item in batch if item is not _STOP]
            try:
                for run_uid, _, _ in items:
                    self._seen[run_uid] = self._seen.get(run_uid, 0) + 1
                for run_uid, name, doc in coalesce_stream_datums(items):
                    self._deliver(run_uid, name, doc)
            except Exception:  # never let the thread die: later runs must still be delivered
                logger.exception("storage: unexpected error delivering documents")
            finally:
                with self._idle:
                    self._outstanding -= len(items)
                    self._idle.notify_all()
            if len(items) < len(batch):
                return

    def _take_waiting(self) -> list:
        """Block for one item (or until the next retry is due), then take every item queued behind it."""
        timeout = max(0.0, self._next_retry - time.monotonic()) if self.behind else None
        try:
            batch = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return batch

    def _deliver(self, run_uid: str | None, name: str, doc: dict) -> None:
        if run_uid is None or run_uid in self.behind:
            return
        try:
            if name == "start":
                self._writers[run_uid] = self._new_writer()
            writer = self._writers.get(run_uid)
            if writer is None:
                raise RuntimeError(f"{name} document of run {run_uid} arrived without its start")
            writer(name, doc)
        except Exception as error:
            self._fall_behind(run_uid, f"delivery of its {name} document failed: {error!r}", error)
            return
        if name == "stop":
            self._finished(run_uid)

    def _new_writer(self):
        from bluesky_tiled_plugins import TiledWriter

        if self._client is None:
            self._client = self._connect()
        return TiledWriter(self._client, batch_size=self._batch_size)

    def _finished(self, run_uid: str) -> None:
        self._writers.pop(run_uid, None)
        self._seen.pop(run_uid, None)
        self._journal.mark_delivered(run_uid)

    def _fall_behind(self, run_uid: str, reason: str, error: Exception) -> None:
        if not self.behind:
            self._backoff = self._retry_after
            self._next_retry = time.monotonic() + self._backoff
        logger.warning("storage: run %s is behind in the server (kept in the journal; retrying): %s", run_uid, reason)
        self.behind[run_uid] = reason
        self._writers.pop(run_uid, None)
        self._journal.mark_pending(run_uid, reason)
        self.close_client()  # the next attempt connects afresh

    def _retry_behind(self) -> None:
        """Catch up the runs that fell behind, if a retry is due; back off further if it fails."""
        if not self.behind or time.monotonic() < self._next_retry:
            return
        for run_uid in list(self.behind):
            try:
                self._catch_up(run_uid)
            except Exception as error:
                self.behind[run_uid] = f"still behind: {error!r}"
                self._journal.mark_pending(run_uid, self.behind[run_uid])
                self.close_client()
                self._backoff = min(2 * self._backoff, self._retry_max)
                self._next_retry = time.monotonic() + self._backoff
                logger.info("storage: server still unavailable (%r); next try in %.0f s", error, self._backoff)
                return
        with self._idle:
            self._idle.notify_all()

    def _catch_up(self, run_uid: str) -> None:
        """Rewrite a run from its journal up to the documents seen so far; go on live if it is open."""
        documents = self._journal.read(run_uid, limit=self._seen.get(run_uid))
        if self._client is None:
            self._client = self._connect()
        if run_uid in self._client:  # the partial copy from before the outage
            self._client[run_uid].delete(recursive=True, external_only=False)
        writer = self._new_writer()
        for name, doc in documents:
            writer(name, doc)
        del self.behind[run_uid]
        logger.info("storage: run %s caught up from the journal (%d documents)", run_uid, len(documents))
        if documents and documents[-1][0] == "stop":
            self._finished(run_uid)
        else:
            self._writers[run_uid] = writer


@dataclass
class Recovered:
    """What :meth:`Storage.recover` did with one run."""

    delivered: bool
    message: str
    points_lost: int = 0
    seconds_lost: float | None = None  # of samples, between the last row on disk and the run's end


UNUSABLE_FIX = "give --data-dir (or storage.data_dir in the lab file) a folder labctl can use"


def check_data_dir(data_dir: Path, *, write: bool) -> bool:
    """Raise :class:`StorageError` if ``data_dir`` cannot be used; return whether it is writable.

    A writer (``labctl run``) needs a directory it can write (created if missing); a reader
    (``runs``, ``show``, ``report``, ``export``) needs an existing one and works read-only.
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise StorageError(data_dir, "is a file, not a data directory", UNUSABLE_FIX)
    if not data_dir.exists():
        if not write:
            raise StorageError(data_dir, "does not exist (no runs stored there)",
                               "give --data-dir the folder that holds journal/, assets/ and tiled/")
        try:
            data_dir.mkdir(parents=True)
        except OSError as error:
            raise StorageError(data_dir, f"cannot be created ({error.strerror})", UNUSABLE_FIX) from None
    can_write = _can_write(data_dir)
    if write and not can_write:
        raise StorageError(data_dir, "is not writable (a read-only disk, or its permissions)",
                           UNUSABLE_FIX + "; runs, show, report and export still read this one")
    if write:
        for sub in ("journal", "assets", "tiled"):
            if (data_dir / sub).exists() and not _can_write(data_dir / sub):
                raise StorageError(data_dir / sub, "is not writable", UNUSABLE_FIX)
    return can_write


def _can_write(directory: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def disk_error(error: OSError, doing: str) -> StorageError:
    """A one-line :class:`StorageError` for an ``OSError`` met while ``doing`` something with a file."""
    path = error.filename or "the data directory"
    if error.errno == errno.ENOSPC:
        fix = "free space on that disk (nothing journalled is lost), then `labctl recover`"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "use a writable folder (--out or --data-dir)"
    elif error.errno == errno.ENOENT:
        fix = "restore the file from a backup or a copy of the data directory"
    else:
        fix = "check the disk and the path"
    return StorageError(path, f"{doing} failed: {error.strerror or error}", fix)


# ---- storage ----------------------------------------------------------------------------------
class Storage:
    """Journal plus databroker (tiled): where a session's documents go and where runs are read.

    Use :meth:`open`; do not construct directly.

    Attributes
    ----------
    data_dir : Path
        Root of everything below.
    assets_dir : Path
        ``data_dir/assets``: where devices write HDF5 pages; readable by the embedded server.
    journal_dir : Path
        ``data_dir/journal``: the local append-only copy of every document.
    uri : str
        The tiled server's URI (the embedded server's includes its API key).
    server : labctl.dataserver.DataServer or None
        The embedded server, None when connected to a remote one (or the one serving the data
        directory already: ``labctl serve``, or a live ``labctl run``'s).
    read_only : bool
        True when the data directory cannot be written (an archive): only reading works.
    """

    def __init__(self, data_dir: Path, uri: str, server=None, *, batch_size: int = LIVE_BATCH_SIZE,
                 lock: Lock | None = None, read_only: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.assets_dir = self.data_dir / "assets"
        self.journal_dir = self.data_dir / "journal"
        self.read_only = read_only
        if not read_only:
            self.assets_dir.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.server = server
        self.lock = lock  # the data directory's writer lock, when this process writes runs
        self._published: Lock | None = None  # server.json, when others go through our server
        self.journal = Journal(self.journal_dir, read_only=read_only)
        self._catalog = None
        self._catalog_lock = threading.Lock()
        self._delivery = _Delivery(self._connect_writer, self.journal, batch_size)
        self._closed = False

    @classmethod
    def open(cls, data_dir: Path | str, uri: str | None = None, *, live: bool = True,
             writer: str | None = None) -> Storage:
        """Open the storage under ``data_dir``, with an embedded tiled server unless ``uri`` is given.

        Parameters
        ----------
        data_dir : Path or str
            Journal, assets and (embedded) catalog directory; created if missing (writers).
        uri : str, optional
            A remote tiled server, e.g. ``http://host:8000/api/v1?api_key=secret``, pointing at
            the root or at a catalog of bluesky runs. It is contacted only when needed, so an
            unreachable server does not prevent running experiments. Without it, a server
            already serving ``data_dir`` (``labctl serve``, or a live ``labctl run``; see
            ``data_dir/server.json``) is used, else an embedded one is started.
        live : bool
            True (the default, for real hardware): every document is written to the server as
            soon as it arrives, so the catalog shows running experiments. False (simulated labs,
            bulk imports): each run's streams are written to the server at its stop document,
            in one request per stream, which is many times faster; the journal has every
            document meanwhile.
        writer : str, optional
            This process writes runs (name the experiment): take the data directory's writer
            lock (:class:`labctl.locks.LockHeld` if another live process holds it; a stale one
            is taken over, ``storage.lock.took_over`` says so) and publish the embedded
            server's URI so that readers go through it. None: a reader.

        Raises
        ------
        StorageError
            The data directory is a file, missing (readers), or not writable (writers).
        """
        batch_size = LIVE_BATCH_SIZE if live else BULK_BATCH_SIZE
        data_dir = Path(data_dir).expanduser().resolve()
        can_write = check_data_dir(data_dir, write=writer is not None)
        lock = writer_lock(data_dir).acquire("labctl run", writer, runs=[]) if writer is not None else None
        server = storage = None
        try:
            if uri is None:
                served = live_holder(data_dir / SERVER_STATE, others_only=False)
                uri = served["uri"] if served is not None else None
            if uri is None:
                from labctl.dataserver import DataServer

                server = DataServer(data_dir, read_only=not can_write)
                uri = server.uri
            storage = cls(data_dir, uri, server, batch_size=batch_size, lock=lock, read_only=not can_write)
            if server is not None and writer is not None:
                storage._published = server_lock(data_dir).acquire("labctl run (embedded server)", writer,
                                                                  uri=server.uri)
            if server is not None:
                storage.catalog  # creates the runs node on first use of this data_dir
        except BaseException:
            if storage is not None:
                storage.close(timeout=1)
            else:
                if server is not None:
                    server.close()
                if lock is not None:
                    lock.release()
            raise
        return storage

    # ---- connections -------------------------------------------------------------------------
    def _connect(self):
        """A new client (own HTTP connection pool) of the catalog of runs, created if missing."""
        from tiled.client import from_uri
        from tiled.structures.core import Spec

        # A server on this host (embedded, or serving the data directory) is on loopback: ignore
        # any HTTP(S)_PROXY of the environment.
        root = from_uri(self.uri, trust_env=urlparse(self.uri).hostname not in ("127.0.0.1", "localhost"))
        try:
            if any(spec.name == CATALOG_SPEC[0] for spec in root.specs):
                return root
            if RUNS_NODE not in root:
                try:
                    return root.create_container(RUNS_NODE, specs=[Spec(*CATALOG_SPEC)])
                except Exception:
                    # Another process may have created it in between; if not, re-raise.
                    if RUNS_NODE not in root:
                        raise
            return root[RUNS_NODE]
        except BaseException:
            root.context.close()
            raise

    def _connect_writer(self):
        """The delivery thread's own client (``TiledWriter`` needs data sources included)."""
        return self._connect().include_data_sources()

    @property
    def catalog(self):
        """The catalog of runs (``CatalogOfBlueskyRuns``): ``catalog[uid]`` is a ``BlueskyRun``.

        Raises :class:`StorageError` if the server cannot be reached.
        """
        with self._catalog_lock:
            if self._catalog is None:
                try:
                    self._catalog = self._connect()
                except Exception as error:
                    raise StorageError(self.server_name, f"the tiled server cannot be reached ({type(error).__name__})",
                                       "start it (see `labctl serve`) or check storage.uri in the lab file") from error
            return self._catalog

    @property
    def server_name(self) -> str:
        """The server's URI without its API key, for messages."""
        url = urlparse(self.uri)
        return f"{url.scheme}://{url.netloc}{url.path}"

    # ---- writing -----------------------------------------------------------------------------
    def callback(self, name: str, doc: dict) -> None:
        """RunEngine subscriber: journal the document, then queue it for the server.

        Never raises because of the server; raises only if the journal cannot be written, which
        must stop an experiment (nothing would be recorded).
        """
        run_uid, line = self.journal.write(name, doc)
        if name == "start" and self.lock is not None:
            # Say which runs are ours, so that `labctl recover` elsewhere leaves them alone.
            self.lock.update(runs=[*self.lock.holder.get("runs", []), run_uid])
        self._delivery.submit(run_uid, name, line)

    def flush(self, timeout: float = 60) -> bool:
        """Wait until every document so far is in the server (or ``timeout`` passes).

        Returns
        -------
        bool
            True if, within ``timeout``, every document so far reached the server (runs that
            fell behind during an outage included); False if some are still only in the journal.
        """
        return self._delivery.wait(timeout)

    def pending(self) -> dict[str, str]:
        """Runs whose journal is not (completely) in the server: start uid -> reason.

        A run a live ``labctl run`` is writing says so (it delivers its runs itself).
        """
        if not self.journal_dir.exists():
            return {}
        found = self.journal.pending()
        holder, owned = self._live_writer()
        for uid in owned & set(found):
            found[uid] = f"being written by {_holder_text(holder)} (it delivers it itself)"
        return found

    def _live_writer(self) -> tuple[dict | None, set[str]]:
        """The live process (not this one) writing into this data directory, and the runs it owns."""
        holder = live_holder(self.data_dir / "writer.lock")
        return holder, set(holder.get("runs", [])) if holder else set()

    def recover(self) -> dict[str, Recovered]:
        """Write every journalled run the server lacks or has incomplete in from the journal.

        A run needs it when its pending marker says the server copy is behind (the server was
        down and this process ended before catching up, or the process died mid-run), when the
        catalog does not have it at all, or when the catalog's copy has no stop document but the
        journal does. Each is written again in full from its journal, replacing any partial copy.
        Its journal is repaired first (:func:`labctl.recovery.repair_journal`: damaged lines and
        documents that do not fit set aside in ``<uid>.quarantine``); a journal without a start
        document (the process died as the step began) holds no run and is set aside whole. A run
        cut short gets its pages checked against their HDF5 files (rows written after the last
        journalled page are announced too) and the stop document it never had (exit status
        ``fail``, reason ``interrupted``), both appended to its journal. Idempotent: a second
        call finds nothing to do. Runs this process is still writing, and the runs of another
        live ``labctl run`` on this data directory (its writer lock lists them), are left alone.

        Returns
        -------
        dict of str to Recovered
            Per run written in (or that failed to be): what happened and the points lost.
        """
        if self.read_only:
            raise StorageError(self.data_dir, "is read-only: nothing can be recovered into it",
                               "copy the data directory to a writable disk and run `labctl recover` there")
        still_open = self.journal.open_runs() | self._live_writer()[1]
        outcomes = {}
        for run_uid in self._needing_recovery():
            if run_uid in still_open:
                continue
            try:
                outcomes[run_uid] = self._redeliver(run_uid)
            except Exception as error:  # keep going: other runs may still be recoverable
                self.journal.mark_pending(run_uid, f"recovery failed: {error!r}")
                outcomes[run_uid] = Recovered(False, f"still pending: {error!r}")
        return outcomes

    def _needing_recovery(self) -> list[str]:
        if not self.journal_dir.exists():
            return []
        pending = self.journal.pending()
        journalled = sorted(path.stem for path in self.journal_dir.glob("*.jsonl") if path.stem != "unrouted")
        # A marker whose journal is gone (set aside by hand) needs nothing but to go.
        for uid in set(pending) - set(journalled):
            self.journal.mark_delivered(uid)
        in_catalog = set(self.catalog) if journalled else set()
        return [uid for uid in journalled
                if uid in pending or uid not in in_catalog or self._copy_unfinished(uid)]

    def _copy_unfinished(self, run_uid: str) -> bool:
        """Whether the catalog's copy of a run lacks the stop document its journal has."""
        try:
            if self.catalog[run_uid].metadata.get("stop"):
                return False
        except Exception:  # unreadable copy: write it again
            return True
        return any(name == "stop" for name, _ in self.journal.read(run_uid)[-1:])

    def _redeliver(self, run_uid: str) -> Recovered:
        from bluesky_tiled_plugins import TiledWriter

        path = self.journal.path(run_uid)
        repair = repair_journal(path)
        if not repair.has_start:
            quarantine = set_aside_journal(path, "no start document: the process died as the step began")
            self.journal.mark_delivered(run_uid)
            return Recovered(True, f"no start document (the process ended as the step began): nothing was "
                                   f"recorded; the journal is set aside in {quarantine}")
        documents = _relocated(repair.documents, self.assets_dir)
        completion = complete_run(run_uid, documents)
        if completion.appended:
            append_to_journal(path, completion.appended)
            documents += completion.appended
        client = self._connect_writer()
        try:
            if run_uid in client:  # a partial copy from the interrupted delivery
                client[run_uid].delete(recursive=True, external_only=False)
            writer = TiledWriter(client, batch_size=BULK_BATCH_SIZE)
            for name, doc in documents:
                writer(name, doc)
        finally:
            client.context.close()
        self.journal.mark_delivered(run_uid)
        parts = ["delivered from the journal", str(repair), str(completion)]
        return Recovered(True, "; ".join(part for part in parts if part), completion.points_lost,
                         completion.seconds_lost)

    def close(self, timeout: float = 60) -> None:
        """Flush (up to ``timeout``), stop the delivery thread and the embedded server; release the locks."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.flush(timeout):
                logger.warning("storage: closing with runs only in the journal: %s", sorted(self.pending()))
            self._delivery.stop(timeout)
            self._delivery.close_client()
            self.journal.close()
            if self._catalog is not None:
                self._catalog.context.close()
                self._catalog = None
        finally:
            if self._published is not None:
                self._published.release()
            if self.server is not None:
                self.server.close()
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- reading -----------------------------------------------------------------------------
    def find(self, uid: str):
        """The run with this (possibly partial, at least 5 characters) start uid, as a :class:`CheckedRun`.

        Raises :class:`StorageError` if the catalog has no such run.
        """
        try:
            run = self.catalog.include_data_sources()[uid]
        except KeyError:
            raise StorageError(f"run {uid}", "is not in the catalog",
                               f"`labctl runs --data-dir {self.data_dir}` lists the stored runs") from None
        return CheckedRun(run)

    def search_cell(self, cell_id: str):
        """The runs of one cell (start document ``cell.id``), a catalog node, newest first."""
        from tiled.queries import Key

        return self.catalog.search(Key("start.cell.id") == cell_id).sort(("start.time", -1))

    def runs(self, limit: int | None = None, node=None) -> list[dict]:
        """Summaries of the runs, newest first.

        Parameters
        ----------
        limit : int, optional
            At most this many.
        node : optional
            A catalog node to summarise instead of the whole catalog (e.g. ``search_cell(...)``).

        Returns
        -------
        list of dict
            ``uid``, ``plan_name``, ``cell_id``, ``start`` (ISO 8601), ``exit_status`` and
            ``reason`` (None while the run is open) and ``num_events`` per stream (from the stop
            document; None while open).
        """
        node = (self.catalog if node is None else node).sort(("start.time", -1))
        items = node.items() if limit is None else node.items()[:limit]
        return [_summary(run.metadata) for _, run in items]


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
            files = _missing_files(run[name])
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


def _missing_files(stream) -> list[str]:
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


def _relocated(documents: list[tuple[str, dict]], assets_dir: Path) -> list[tuple[str, dict]]:
    """Point stream resources at ``assets_dir`` when the data directory was moved since they were written."""
    from labctl.assets import _file_uri

    moved = []
    for name, doc in documents:
        if name == "stream_resource" and doc.get("uri", "").startswith("file:"):
            path = Path(urlparse(doc["uri"]).path)
            here = assets_dir / path.name
            if not path.exists() and here.exists():
                doc = {**doc, "uri": _file_uri(here)}
        moved.append((name, doc))
    return moved


def _holder_text(holder: dict | None) -> str:
    from labctl.locks import describe_holder

    return describe_holder(holder) if holder else "another process"


def _summary(metadata: dict) -> dict:
    start, stop = metadata.get("start") or {}, metadata.get("stop") or {}
    cell = start.get("cell")
    return {
        "uid": start.get("uid"),
        "plan_name": start.get("plan_name"),
        "cell_id": cell.get("id") if isinstance(cell, dict) else None,
        "start": _iso(start.get("time")),
        "exit_status": stop.get("exit_status"),
        "reason": stop.get("reason") if stop else None,
        "num_events": stop.get("num_events") if stop else None,
        "result": stop.get("result") if stop else None,  # the plan's result event (labctl.session.LabRunEngine)
    }
