"""The delivery thread: journalled documents to the tiled server, through outages."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from labctl.storage.journal import Journal
from labctl.storage.upload import new_writer

logger = logging.getLogger(__name__)

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


class Delivery:
    """A thread that feeds journaled documents to one ``TiledWriter`` per run, through outages.

    When a write fails (the server is down, slow past tiled's own retries, or refuses a
    document), the run falls *behind*: it is marked pending in the journal, its later documents
    are only counted, and the thread retries with exponential backoff (``retry_after`` doubling
    up to ``retry_max``). A retry catches the run up from its journal: the partial copy in the
    server is deleted and every document the thread has seen so far is written again with a
    fresh writer, which then takes the run's next documents live. The RunEngine never waits for
    any of this (it only appends to the journal and the queue).
    """

    def __init__(self, connect, journal: Journal, batch_size: int, *, upload: bool = False) -> None:
        self._connect = connect  # () -> tiled client of the runs node, include_data_sources
        self._upload = upload  # the server cannot read this host's files: send the pages' rows
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
        if self._client is None:
            self._client = self._connect()
        return new_writer(self._client, self._batch_size, upload=self._upload)

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

