"""Completing the journal of a run whose process died: pages on disk, and the stop it never had.

A killed process leaves three things behind: its journal (every document up to the last one
written, perhaps a last line cut short, perhaps nothing at all if it died as the step began), the
HDF5 pages its devices wrote (rows are fsynced before the stream datum announcing them is
emitted, so the file can hold rows the journal never heard of, never fewer), and perhaps a
partial copy in the server. :func:`repair_journal` keeps every readable, consistent document of a
journal and sets the rest aside in a quarantine file beside it (``<uid>.quarantine``), so one
damaged line never blocks a run; :func:`complete_run` then turns the journal into a whole run
again: it checks every journalled page against its file, announces the rows written after the
last journalled page (every field of a stream up to the same row, whichever of a page's stream
datums the kill cut off), and closes the run as failed, "interrupted".
:meth:`labctl.storage.Storage.recover` then writes the run in.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import h5py
import numpy as np

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
QUARANTINE_SUFFIX = ".quarantine"


# ---- reading and repairing a journal -------------------------------------------------------------
@dataclass
class JournalContents:
    """What a journal file holds: its documents, and the lines that are not journal lines."""

    documents: list[tuple[str, dict]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # 1-based line number of each document
    damaged: list[tuple[int, str]] = field(default_factory=list)  # (line number, text) unreadable

    @property
    def cut_short(self) -> bool:
        """Whether the last line was cut short by a crash mid-write (it lacks its newline)."""
        return bool(self.damaged) and not self.damaged[-1][1].endswith("\n")


def read_journal(path: Path, limit: int | None = None) -> JournalContents:
    """Read a journal file, keeping every readable line; unreadable lines are returned apart.

    Parameters
    ----------
    path : Path
        The journal (``<uid>.jsonl``).
    limit : int, optional
        Read at most this many lines.
    """
    contents = JournalContents()
    with open(path, encoding="utf-8", errors="replace") as file:
        for number, line in enumerate(file, 1):
            if limit is not None and number > limit:
                break
            entry = _entry(line)
            if entry is None:
                contents.damaged.append((number, line))
            else:
                contents.documents.append(entry)
                contents.lines.append(number)
    return contents


def _entry(line: str) -> tuple[str, dict] | None:
    try:
        entry = json.loads(line)
        name, doc = entry["name"], entry["doc"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(name, str) or not isinstance(doc, dict):
        return None
    return name, doc


@dataclass
class Repair:
    """What :func:`repair_journal` kept of a journal and what it set aside, and why."""

    documents: list[tuple[str, dict]]
    set_aside: list[tuple[int | None, str]] = field(default_factory=list)  # (line, why)
    quarantine: Path | None = None

    @property
    def has_start(self) -> bool:
        return bool(self.documents) and self.documents[0][0] == "start"

    def __str__(self) -> str:
        if not self.set_aside:
            return ""
        lines = sorted({line for line, _ in self.set_aside if line is not None})
        shown = ", ".join(str(line) for line in lines[:5]) + (", ..." if len(lines) > 5 else "")
        reasons = sorted({why for _, why in self.set_aside})
        return (f"{len(self.set_aside)} journal line(s) set aside in {self.quarantine}"
                + (f" (line {shown})" if lines else "") + f": {'; '.join(reasons)}")


def repair_journal(path: Path) -> Repair:
    """Keep the readable, consistent documents of a journal; set the rest aside in its quarantine file.

    The lines set aside are appended verbatim to ``<uid>.quarantine`` beside the journal (with
    their line number and why), and the journal is rewritten (atomically) without them, so a
    second call finds nothing to do. Set aside: lines that are not JSON journal lines (garbage,
    a last line cut short by a crash), and documents that do not fit the run (see
    :func:`consistent_documents`).
    """
    contents = read_journal(path)
    kept, dropped = consistent_documents(contents.documents)
    set_aside = [(number, "not a journal line" if text.endswith("\n") else "last line cut short by a crash")
                 for number, text in contents.damaged]
    set_aside += [(contents.lines[index], why) for index, why in dropped]
    quarantine = path.with_suffix(QUARANTINE_SUFFIX)
    if not set_aside:
        return Repair(kept, [], None)
    by_line = {number: text for number, text in contents.damaged}
    raw = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    with open(quarantine, "a", encoding="utf-8") as file:
        for number, why in sorted(set_aside, key=lambda item: item[0] or 0):
            text = by_line.get(number) or (raw[number - 1] if number and number <= len(raw) else "")
            file.write(json.dumps({"journal": path.name, "line": number, "why": why, "text": text}) + "\n")
        file.flush()
        os.fsync(file.fileno())
    _rewrite(path, kept)
    logger.warning("journal %s: %d line(s) set aside in %s", path, len(set_aside), quarantine)
    return Repair(kept, set_aside, quarantine)


def consistent_documents(documents: list[tuple[str, dict]]) -> tuple[list[tuple[str, dict]], list[tuple[int, str]]]:
    """Split a run's documents into those that form a consistent run and those that do not.

    A run is one start document, then documents that name what they belong to (descriptors,
    stream resources) before they are used, then at most one stop, last. Set aside: anything
    before the start or a second start, a document repeated (same uid), an event or stream datum
    whose descriptor or stream resource is unknown (its line was damaged), an event repeating a
    row (seq_num) of its stream, a stream datum that
    overlaps an earlier one, and a stop followed by more documents (closed too early, e.g. by a
    recovery that ran beside a live run: the run went on). A stream datum that starts after the
    previous one ended (the datum in between was damaged) is widened back to close the gap: the
    rows are in the file.

    Returns
    -------
    kept : list of (name, doc)
    dropped : list of (index into ``documents``, why)
    """
    kept: list[tuple[str, dict]] = []
    dropped: list[tuple[int, str]] = []
    start_uid, seen, descriptors, resources, numbered = None, set(), set(), {}, set()
    last_other = max((i for i, (name, _) in enumerate(documents) if name != "stop"), default=-1)
    stop_kept = False
    for index, (name, doc) in enumerate(documents):
        why = None
        uid = doc.get("uid") if isinstance(doc.get("uid"), str) else None  # an event page's is a list
        if start_uid is None and name != "start":
            why = "before the start document"
        elif name == "start" and start_uid is not None:
            why = "a second start document"
        elif uid is not None and uid in seen:
            why = "a repeated document"
        elif name == "descriptor" and doc.get("run_start") not in (None, start_uid):
            why = "a descriptor of another run"
        elif name in ("event", "event_page") and doc.get("descriptor") not in descriptors:
            why = f"an {name} of an unknown descriptor"
        elif name in ("event", "event_page") and numbered & set(_seq_nums(doc)):
            why = f"an {name} repeating a seq_num of its stream"
        elif name == "stream_datum":
            why, doc = _checked_datum(doc, descriptors, resources)
        elif name == "stop" and (index < last_other or stop_kept):
            why = "a stop document followed by more of the run" if index < last_other else "a second stop document"
        if why:
            dropped.append((index, why))
            continue
        if name == "start":
            start_uid = uid
        elif name == "descriptor":
            descriptors.add(uid)
        elif name == "stream_resource":
            resources[uid] = {"index": 0, "seq": None}
        elif name == "stop":
            stop_kept = True
        elif name in ("event", "event_page"):
            numbered.update(_seq_nums(doc))
        if uid is not None:
            seen.add(uid)
        kept.append((name, doc))
    return kept, dropped


def _seq_nums(doc: dict) -> list[tuple[str, int]]:
    """(descriptor, seq_num) of each row of an event or event page."""
    numbers = doc.get("seq_num")
    numbers = numbers if isinstance(numbers, list) else [numbers]
    return [(doc.get("descriptor"), number) for number in numbers if isinstance(number, int)]


def _checked_datum(doc: dict, descriptors: set, resources: dict) -> tuple[str | None, dict]:
    """(why it is set aside or None, the datum, widened over a gap left by a damaged one)."""
    state = resources.get(doc.get("stream_resource"))
    if state is None:
        return "a stream datum of an unknown stream resource", doc
    if doc.get("descriptor") not in descriptors:
        return "a stream datum of an unknown descriptor", doc
    try:
        start, stop = doc["indices"]["start"], doc["indices"]["stop"]
        seq_start, seq_stop = doc["seq_nums"]["start"], doc["seq_nums"]["stop"]
    except (KeyError, TypeError):
        return "a stream datum without indices", doc
    if start < state["index"] or stop <= start:
        return "a stream datum overlapping an earlier one", doc
    if start > state["index"]:  # the datum before it was damaged: its rows are in the file
        gap = start - state["index"]
        doc = {**doc, "indices": {"start": state["index"], "stop": stop},
               "seq_nums": {"start": seq_start - gap if state["seq"] is None else state["seq"], "stop": seq_stop}}
    state["index"], state["seq"] = stop, doc["seq_nums"]["stop"]
    return None, doc


def _rewrite(path: Path, documents: list[tuple[str, dict]]) -> None:
    """Replace a journal by these documents, atomically and durably."""
    temporary = path.with_suffix(".jsonl.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        for name, doc in documents:
            file.write(json.dumps({"name": name, "doc": doc}) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def set_aside_journal(path: Path, why: str) -> Path:
    """Move a whole journal that holds no run (no start document) into its quarantine file."""
    quarantine = path.with_suffix(QUARANTINE_SUFFIX)
    text = path.read_text(encoding="utf-8", errors="replace")
    with open(quarantine, "a", encoding="utf-8") as file:
        file.write(json.dumps({"journal": path.name, "line": None, "why": why, "text": text}) + "\n")
        file.flush()
        os.fsync(file.fileno())
    path.unlink()
    return quarantine


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
    adopted: list[str] = field(default_factory=list)  # files of rows written before the first page
    collects: bool = False  # the run declared a collected stream (rows in files)

    seconds_lost: float | None = None  # see complete_run

    @property
    def points_lost(self) -> int:
        return sum(check.lost for check in self.streams)

    def __str__(self) -> str:
        parts = [f"rows written before the first page recovered from {name}" for name in self.adopted]
        parts += [str(check) for check in self.streams]
        if self.closed:
            parts.append(f"closed as failed ({INTERRUPTED}: the journal had no stop document)")
        if self.seconds_lost is not None:
            parts.append(f"samples lost: {self.seconds_lost:.0f} s (from the last row on disk to the run's "
                         "last journalled reading)")
        elif self.closed and self.collects:
            parts.append("samples lost: not determined (no row of the run reached a file before the process ended)")
        return "; ".join(parts)


def complete_run(run_uid: str, documents: list[tuple[str, dict]],
                 unannounced: UnannouncedFiles | None = None) -> Completion:
    """Check a journalled run's pages against its files and return the documents it lacks.

    Parameters
    ----------
    run_uid : str
        The run's start uid.
    documents : list of (name, doc)
        The run's journal.
    unannounced : UnannouncedFiles, optional
        The data directory's HDF5 files that no journal names (:func:`unannounced_files`): a
        run cut short before its first page has its rows in one of them.

    Returns
    -------
    Completion
        A check per stream with long data, and the documents to append: stream resources for
        fields the journal never announced (a file of this run it never heard of: the process
        died before the first page; or fields of an announced file: it died between the stream
        resources of the first page), stream datums bringing every field of each stream to the
        rows readable in all its files (written after the last journalled page, or a page
        announced for some fields only: the process died between its stream datums), then (if
        the journal has none) a stop document with exit status ``fail`` and reason ``interrupted``.
    """
    completion = Completion()
    has_stop = any(name == "stop" for name, _ in documents)
    named = {doc["uri"] for name, doc in documents if name == "stream_resource"}
    adopted = [] if has_stop else _adopted_pages(documents, unannounced)
    documents = documents + adopted
    completion.appended.extend(adopted)
    completion.collects = any(spec.get("external") == "STREAM:" for name, doc in documents if name == "descriptor"
                              for spec in doc.get("data_keys", {}).values())
    completion.adopted = sorted({Path(urlparse(doc["uri"]).path).name for name, doc in adopted
                                 if doc["uri"] not in named})
    for descriptor, resources in _resources_by_descriptor(documents).items():
        check, datums = _check_stream(descriptor, resources, documents)
        completion.streams.append(check)
        if not has_stop:  # a stopped run's pages are final; only a cut-short run gains rows
            completion.appended.extend(datums)
    if not has_stop:
        stop = closing_stop(run_uid, documents + completion.appended[len(adopted):])
        completion.appended.append(("stop", stop))
        completion.closed = True
        completion.seconds_lost = _seconds_lost(documents)
    return completion


def _seconds_lost(documents) -> float | None:
    """Session-clock seconds between the last row in the run's files and its last journalled reading.

    None for a run without rows in files. The readings (events) are stamped on the session clock,
    as the rows are; anything the process measured after its last reading is not known here:
    rows reach the file every few seconds (see ``devices/biologic/channel.py``), which bounds it.
    """
    resources = [doc for name, doc in documents if name == "stream_resource" and doc.get("data_key", "").endswith("_time")]
    last_rows = [t for t in (_last_value(resource) for resource in resources) if t is not None]
    if not last_rows:
        return None
    readings = [max(doc["timestamps"].values()) for name, doc in documents
                if name == "event" and doc.get("timestamps")]
    return max(0.0, max(readings, default=0.0) - max(last_rows))


def _last_value(resource: dict) -> float | None:
    path = urlparse(resource["uri"]).path
    try:
        with h5py.File(path, "r", swmr=resource.get("parameters", {}).get("swmr", False)) as file:
            dataset = file[resource["parameters"]["dataset"]]
            return float(dataset[-1]) if len(dataset) else None
    except (OSError, KeyError):
        return None


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
        "time": max((doc.get("time", 0.0) for _, doc in documents), default=0.0),
        "exit_status": "fail",
        "reason": f"{INTERRUPTED}: the process ended before the run was closed (recovered from the journal)",
        "num_events": counts,
    }


# ---- pages the journal never heard of --------------------------------------------------------------
@dataclass
class UnannouncedFiles:
    """HDF5 files in the assets directory that no journal's stream resource names.

    A device opens its file when it is staged and announces it (a ``stream_resource``) with its
    first page; a process killed in between leaves rows in a file no journal names.
    """

    files: list[Path]


def unannounced_files(journal_dir: Path, assets_dir: Path) -> UnannouncedFiles:
    """Find the HDF5 files of ``assets_dir`` no journal in ``journal_dir`` names (by file name: directories move)."""
    named = set()
    for journal in sorted(Path(journal_dir).glob("*.jsonl")):
        with open(journal, encoding="utf-8", errors="replace") as file:
            for line in file:
                entry = _entry(line) if '"stream_resource"' in line else None
                if entry is None:
                    continue
                name, doc = entry
                if name == "stream_resource":
                    named.add(Path(urlparse(str(doc.get("uri", ""))).path).name)
    files = sorted(path for path in Path(assets_dir).glob("*.h5") if path.name not in named)
    return UnannouncedFiles(files)


def _adopted_pages(documents, unannounced: UnannouncedFiles | None) -> list[tuple[str, dict]]:
    """Stream resources for the fields of this run's collected streams that the journal never announced.

    A collected stream (its descriptor's data keys say ``external: "STREAM:"`` and ``source:
    "hdf5:<stream><dataset>"``) writes all its fields into one file, and its first page announces
    them one stream resource at a time. A kill between two of them leaves fields the journal
    never named: they take the file of their announced siblings. A stream none of whose fields
    was announced (killed before the first page) takes the unannounced file of that stream whose
    rows include the time of one of the run's readings: the plans read the channel's latest row
    into ``primary`` between pages, stamped with that row's time. (The session clocks of
    successive simulated sessions overlap, so a time window would not do.) The rows themselves
    are announced by :func:`_check_stream`, up to the same row for every field.
    """
    start = documents[0][1]
    readings = np.array(sorted({t for name, doc in documents if name == "event"
                                for t in doc.get("timestamps", {}).values() if isinstance(t, (int, float))}))
    announced = {doc["data_key"]: doc for name, doc in documents if name == "stream_resource"}
    adopted = []
    for name, descriptor in documents:
        if name != "descriptor":
            continue
        collected = {key: _dataset_of(spec) for key, spec in descriptor.get("data_keys", {}).items()
                     if spec.get("external") == "STREAM:" and _dataset_of(spec)}
        keys = {key: dataset for key, dataset in collected.items() if key not in announced}
        sibling = next((announced[key] for key in collected if key in announced), None)
        if not keys:
            continue
        if sibling is not None:
            path = Path(urlparse(sibling["uri"]).path)
            adopted += _resources(start["uid"], path, keys, sibling.get("parameters", {}).get("swmr", True))
        elif unannounced is not None:
            adopted += _adopt(start["uid"], descriptor, keys, unannounced.files, readings)
    return adopted


def _dataset_of(spec: dict) -> str | None:
    """``/data/Ewe`` of a data key whose source is ``hdf5:potentiostat/data/Ewe``, else None."""
    source = str(spec.get("source", ""))
    if not source.startswith("hdf5:") or "/" not in source:
        return None
    return source[source.index("/"):]


def _adopt(run_uid: str, descriptor: dict, keys: dict[str, str], files: list[Path],
           readings: np.ndarray) -> list[tuple[str, dict]]:
    stream = descriptor["name"]
    time_key = next((key for key in keys if key.endswith("_time")), None)
    if time_key is None:
        return []  # no way to tell which run a file belongs to
    for path in files:
        if not path.stem.rsplit("-", 1)[0].endswith(f"-{stream}"):
            continue
        try:
            with h5py.File(path, "r", swmr=True) as file:
                rows = min(len(file[dataset]) for dataset in keys.values())
                ours = bool(np.isin(file[keys[time_key]][:rows], readings).any())
        except (OSError, KeyError):
            continue
        if rows == 0 or not ours:
            continue
        logger.info("run %s: %d rows of its %s stream found in %s, written before its first page", run_uid, rows,
                    stream, path)
        return _resources(run_uid, path, keys, True)
    return []


def _resources(run_uid: str, path: Path, keys: dict[str, str], swmr: bool) -> list[tuple[str, dict]]:
    """Stream resources for the datasets ``keys`` (data key -> dataset) of one HDF5 file."""
    from labctl.core.assets import HDF5_MIMETYPE, _file_uri

    try:
        with h5py.File(path, "r", swmr=swmr) as file:
            chunks = {key: file[dataset].chunks[0] for key, dataset in keys.items()}
    except (OSError, KeyError, TypeError):
        return []
    return [("stream_resource", {"uid": str(uuid.uuid4()), "data_key": key, "mimetype": HDF5_MIMETYPE,
                                 "uri": _file_uri(path), "run_start": run_uid,
                                 "parameters": {"dataset": dataset, "chunk_shape": [chunks[key]], "swmr": swmr}})
            for key, dataset in keys.items()]


# ---- helpers -------------------------------------------------------------------------------------
def _resources_by_descriptor(documents) -> dict[str, list[dict]]:
    """The stream resources of each collected stream (by descriptor uid), announced with a datum or not.

    A stream resource names its data key, not its stream: the descriptor declaring that key
    (``external: "STREAM:"``) is its stream.
    """
    by_key = {key: doc["uid"] for name, doc in documents if name == "descriptor"
              for key, spec in doc.get("data_keys", {}).items() if spec.get("external") == "STREAM:"}
    by_datum = {doc["stream_resource"]: doc["descriptor"] for name, doc in documents if name == "stream_datum"}
    grouped: dict[str, list[dict]] = {}
    for name, doc in documents:
        if name != "stream_resource":
            continue
        descriptor = by_datum.get(doc["uid"]) or by_key.get(doc.get("data_key"))
        if descriptor is not None:
            grouped.setdefault(descriptor, []).append(doc)
    return grouped


def _check_stream(descriptor: str, resources: list[dict], documents) -> tuple[StreamCheck, list]:
    """Compare one stream's journalled rows with its files; datums bringing every field to the same row.

    The fields of a stream are announced one stream datum each, page by page, so a kill between
    two of them leaves the fields journalled to different rows. Every field is announced up to
    the rows readable in all its files (at least as many as any journalled page announces: rows
    are fsynced before their page), so the stream's columns have one length.
    """
    stream = next(doc["name"] for name, doc in documents if name == "descriptor" and doc["uid"] == descriptor)
    last_datum = {}
    for name, doc in documents:
        if name == "stream_datum" and doc["descriptor"] == descriptor:
            last_datum[doc["stream_resource"]] = doc
    stops = {resource["uid"]: last_datum[resource["uid"]]["indices"]["stop"] if resource["uid"] in last_datum else 0
             for resource in resources}
    pages = max((sum(1 for name, doc in documents if name == "stream_datum" and doc["stream_resource"] == uid)
                 for uid in stops), default=0)
    journalled = max(stops.values(), default=0)
    on_disk = min((_rows_in_file(resource) for resource in resources), default=0)
    check = StreamCheck(stream, journalled, on_disk, pages)
    datums = []
    for resource in resources:
        uid, start = resource["uid"], stops[resource["uid"]]
        if start >= on_disk:
            continue
        last = last_datum.get(uid)
        seq_start = last["seq_nums"]["stop"] if last else start + 1
        count = sum(1 for name, doc in documents if name == "stream_datum" and doc["stream_resource"] == uid)
        datums.append(("stream_datum", {
            "uid": f"{uid}/{count}",
            "stream_resource": uid,
            "descriptor": descriptor,
            "indices": {"start": start, "stop": on_disk},
            "seq_nums": {"start": seq_start, "stop": seq_start + on_disk - start},
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
