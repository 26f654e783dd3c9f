"""Completing the journal of a run whose process died: pages on disk, and the stop it never had.

A killed process leaves three things behind: its journal (every document up to the last one
written, perhaps a last line cut short), the HDF5 pages its devices wrote (rows are fsynced
before the stream datum announcing them is emitted, so the file can hold rows the journal never
heard of, never fewer), and perhaps a partial copy in the server. :func:`complete_run` turns the
journal into a whole run again: it checks every journalled page against its file, announces the
rows written after the last journalled page, and closes the run as failed, "interrupted".
:meth:`labctl.storage.Storage.recover` then writes the run in.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import h5py

INTERRUPTED = "interrupted"


@dataclass
class StreamCheck:
    """One stream's long data (stream resources and datums) checked against its files."""

    stream: str
    journalled: int  # rows the journal's stream datums announce
    on_disk: int  # rows readable in every file of the stream
    pages: int  # stream datums per field in the journal

    @property
    def lost(self) -> int:
        """Journalled rows missing from the files (never expected: rows are fsynced first)."""
        return max(0, self.journalled - self.on_disk)

    @property
    def added(self) -> int:
        """Rows in the files after the last journalled page (the process died in between)."""
        return max(0, self.on_disk - self.journalled)

    def __str__(self) -> str:
        text = f"{self.stream}: {self.journalled} points in {self.pages} journalled pages, {self.lost} lost"
        return text + (f", {self.added} written after the last page recovered" if self.added else "")


@dataclass
class Completion:
    """What :func:`complete_run` found and appended."""

    streams: list[StreamCheck] = field(default_factory=list)
    appended: list[tuple[str, dict]] = field(default_factory=list)
    closed: bool = False

    @property
    def points_lost(self) -> int:
        return sum(check.lost for check in self.streams)

    def __str__(self) -> str:
        parts = [str(check) for check in self.streams]
        if self.closed:
            parts.append(f"closed as failed ({INTERRUPTED}: the journal had no stop document)")
        return "; ".join(parts)


def complete_run(run_uid: str, documents: list[tuple[str, dict]]) -> Completion:
    """Check a journalled run's pages against its files and return the documents it lacks.

    Parameters
    ----------
    run_uid : str
        The run's start uid.
    documents : list of (name, doc)
        The run's journal.

    Returns
    -------
    Completion
        A check per stream with long data, and the documents to append: stream datums for rows
        written after the last journalled page, then (if the journal has none) a stop document
        with exit status ``fail`` and reason ``interrupted``.
    """
    completion = Completion()
    has_stop = any(name == "stop" for name, _ in documents)
    for descriptor, resources in _resources_by_descriptor(documents).items():
        check, datums = _check_stream(descriptor, resources, documents)
        completion.streams.append(check)
        if not has_stop:  # a stopped run's pages are final; only a cut-short run gains rows
            completion.appended.extend(datums)
    if not has_stop:
        stop = closing_stop(run_uid, documents + completion.appended)
        completion.appended.append(("stop", stop))
        completion.closed = True
    return completion


def append_to_journal(path: Path, documents: list[tuple[str, dict]]) -> None:
    """Append documents to a dead run's journal, first dropping a last line cut short by the crash."""
    with open(path, "r+b") as file:
        content = file.read()
        file.truncate(content.rfind(b"\n") + 1)
        file.seek(0, os.SEEK_END)
        for name, doc in documents:
            file.write((json.dumps({"name": name, "doc": doc}) + "\n").encode())
        file.flush()
        os.fsync(file.fileno())


def closing_stop(run_uid: str, documents: list[tuple[str, dict]]) -> dict:
    """The stop document a run cut short never got: failed, interrupted, at its last document's time."""
    streams = {doc["uid"]: doc["name"] for name, doc in documents if name == "descriptor"}
    counts: dict[str, int] = {}
    for name, doc in documents:
        if name == "event":
            last = doc["seq_num"]
        elif name == "event_page":
            last = max(doc["seq_num"], default=0)
        elif name == "stream_datum":
            last = doc["seq_nums"]["stop"] - 1
        else:
            continue
        stream = streams[doc["descriptor"]]
        counts[stream] = max(counts.get(stream, 0), last)
    return {
        "uid": str(uuid.uuid4()),
        "run_start": run_uid,
        "time": max(doc.get("time", 0.0) for _, doc in documents),
        "exit_status": "fail",
        "reason": f"{INTERRUPTED}: the process ended before the run was closed (recovered from the journal)",
        "num_events": counts,
    }


# ---- helpers -------------------------------------------------------------------------------------
def _resources_by_descriptor(documents) -> dict[str, list[dict]]:
    """Stream resources grouped by the descriptor their datums name."""
    resources = {doc["uid"]: doc for name, doc in documents if name == "stream_resource"}
    grouped: dict[str, dict[str, dict]] = {}
    for name, doc in documents:
        if name == "stream_datum":
            grouped.setdefault(doc["descriptor"], {})[doc["stream_resource"]] = resources[doc["stream_resource"]]
    return {descriptor: list(found.values()) for descriptor, found in grouped.items()}


def _check_stream(descriptor: str, resources: list[dict], documents) -> tuple[StreamCheck, list]:
    """Compare one stream's journalled rows with its files; datums announcing any extra rows."""
    stream = next(doc["name"] for name, doc in documents if name == "descriptor" and doc["uid"] == descriptor)
    last_datum = {}
    for name, doc in documents:
        if name == "stream_datum" and doc["descriptor"] == descriptor:
            last_datum[doc["stream_resource"]] = doc
    pages = sum(1 for name, doc in documents if name == "stream_datum" and doc["stream_resource"] == resources[0]["uid"])
    journalled = max(doc["indices"]["stop"] for doc in last_datum.values())
    on_disk = min(_rows_in_file(resource) for resource in resources)
    check = StreamCheck(stream, journalled, on_disk, pages)
    datums = []
    if check.added:
        for resource in resources:
            last = last_datum[resource["uid"]]
            seq_start = last["seq_nums"]["stop"]
            datums.append(("stream_datum", {
                "uid": f"{resource['uid']}/{pages}",
                "stream_resource": resource["uid"],
                "descriptor": descriptor,
                "indices": {"start": journalled, "stop": on_disk},
                "seq_nums": {"start": seq_start, "stop": seq_start + check.added},
            }))
    return check, datums


def _rows_in_file(resource: dict) -> int:
    """Rows of a stream resource's dataset readable now (0 if the file is gone or unreadable)."""
    path = urlparse(resource["uri"]).path
    try:
        with h5py.File(path, "r", swmr=resource.get("parameters", {}).get("swmr", False)) as file:
            return len(file[resource["parameters"]["dataset"]])
    except (OSError, KeyError):
        return 0
