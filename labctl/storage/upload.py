"""Writing runs into a tiled server on another host: the potentiostat's HDF5 pages go up as arrays.

``TiledWriter`` registers a ``stream_resource`` as an *external* asset: the server records the
file's path on this host and reads the file itself when asked. A server on another host cannot
(it shares no filesystem with the lab PC). :class:`UploadingWriter` wraps ``TiledWriter`` for such
a server: it keeps the asset documents of local files (``file://``) from it and, for each
``stream_datum``, reads the rows it announces from the HDF5 file and writes them into the
server's writable storage through the tiled client, one array node per data key in the
stream's node (``write_array`` for the first rows, then ``patch(..., extend=True)``), exactly
where ``TiledWriter`` puts the arrays it writes from events. Every other document goes to
``TiledWriter`` unchanged. A stock tiled client reads the run as it reads any other
(``run["potentiostat"].read()``).

Live (``batch_size`` 1, real hardware) each page goes up as it is announced, so the catalog
shows the running measurement; in batches (the simulated lab, recovery) each data key goes up
once, at the run's stop, from its whole range of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import h5py
import numpy as np


@dataclass
class _Rows:
    """Rows of one stream resource announced but not yet written to the server."""

    stream_resource: str
    start: int
    stop: int


class UploadingWriter:
    """``TiledWriter`` for a server that cannot read this host's files (see the module docstring).

    Parameters
    ----------
    client
        The tiled client of the catalog of runs (as for ``TiledWriter``).
    batch_size : int
        ``TiledWriter``'s; 1 uploads every page at once, more uploads at the run's stop.
    """

    def __init__(self, client, batch_size: int) -> None:
        from bluesky_tiled_plugins import TiledWriter

        self._client = client
        self._writer = TiledWriter(client, batch_size=batch_size)
        self._live = batch_size <= 1  # TiledWriter writes each document at once too
        self._run: str | None = None
        self._streams: dict[str, str] = {}  # descriptor uid -> stream name
        self._data_keys: dict[str, dict] = {}
        self._resources: dict[str, dict] = {}  # stream resource uid -> document (local files only)
        self._waiting: list[_Rows] = []
        self._arrays: dict[tuple[str, str], object] = {}  # (stream, data key) -> ArrayClient
        self._lengths: dict[tuple[str, str], int] = {}  # rows written to each (the client does not follow)
        self._nodes: dict[str, object] = {}  # stream name -> its container in the server

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self._run = doc["uid"]
        elif name == "descriptor":
            self._streams[doc["uid"]] = doc["name"]
            self._data_keys.update(doc.get("data_keys", {}))
        elif name == "stream_resource" and doc.get("uri", "").startswith("file:"):
            self._resources[doc["uid"]] = {**doc, "stream": None}
            return
        elif name == "stream_datum" and doc["stream_resource"] in self._resources:
            self._announced(doc)
            return
        elif name == "stop":
            self._upload_waiting()
        self._writer(name, doc)

    def _announced(self, datum: dict) -> None:
        resource = self._resources[datum["stream_resource"]]
        resource["stream"] = self._streams[datum["descriptor"]]
        start, stop = datum["indices"]["start"], datum["indices"]["stop"]
        last = self._waiting[-1] if self._waiting else None
        if last is not None and last.stream_resource == datum["stream_resource"] and last.stop == start:
            last.stop = stop
        else:
            self._waiting.append(_Rows(datum["stream_resource"], start, stop))
        if self._live:
            self._upload_waiting()

    def _upload_waiting(self) -> None:
        while self._waiting:
            self._upload(self._waiting[0])
            self._waiting.pop(0)  # only once written: a failed upload is retried whole

    def _upload(self, rows: _Rows) -> None:
        resource = self._resources[rows.stream_resource]
        stream, key = resource["stream"], resource["data_key"]
        values = _read_rows(resource, rows.start, rows.stop)
        array = self._arrays.get((stream, key))
        offset = self._lengths.get((stream, key), 0)
        if array is None:
            metadata = {k: v for k, v in self._data_keys.get(key, {}).items() if k != "external"}
            dims = ("time", *(f"dim_{key}_{axis}" for axis in range(1, values.ndim)))
            self._arrays[stream, key] = self._node(stream).write_array(values, key=key, metadata=metadata,
                                                                       dims=dims)
        else:
            array.patch(values, offset=(offset,), extend=True)
        self._lengths[stream, key] = offset + len(values)

    def _node(self, stream: str):
        if stream not in self._nodes:
            node = self._client[self._run][stream]
            self._nodes[stream] = getattr(node, "base", node)  # the composite stream's plain container
        return self._nodes[stream]


def _read_rows(resource: dict, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a stream resource's dataset, read from its HDF5 file on this host."""
    path = urlparse(resource["uri"]).path
    swmr = resource.get("parameters", {}).get("swmr", False)
    with h5py.File(path, "r", swmr=swmr) as file:
        dataset = file[resource["parameters"]["dataset"]]
        if swmr:
            dataset.refresh()
        if dataset.shape[0] < stop:
            raise OSError(f"{path}: {dataset.shape[0]} rows, the journal announces {stop}")
        return dataset[start:stop]


def new_writer(client, batch_size: int, *, upload: bool):
    """The writer of one run: ``TiledWriter``, or an :class:`UploadingWriter` for a server on another host."""
    if upload:
        return UploadingWriter(client, batch_size)
    from bluesky_tiled_plugins import TiledWriter

    return TiledWriter(client, batch_size=batch_size)
