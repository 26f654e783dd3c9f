"""Long time series into bluesky as pages in an HDF5 file, not as one event per point.

A potentiostat flyer measures at 1 Hz for a day: 86,400 rows. One event per row would cost a
document, a JSON-schema validation and a database row each. Area detectors solved this long ago:
the device writes its data to a file and hands bluesky only *asset documents* that point into it,
a ``stream_resource`` per field once, then a ``stream_datum`` per field per page saying "rows
``start`` to ``stop`` are now in the file". :class:`HDF5StreamWriter` does the file half of that
for scalar (and fixed-length array) fields.

File layout (what ``bluesky_tiled_plugins``' ``HDF5Consolidator`` and tiled's HDF5 adapter read)::

    <directory>/<prefix>-<stream_name>-<8 hex>.h5
        /data/<field>     1-D (rows,) or 2-D (rows, n) dataset, chunked along rows, resizable

The file is written in SWMR mode (single writer, multiple readers): tiled opens it with
``swmr=True`` (the consolidator's default), so the server can serve the rows of a running 24 h
measurement while the device keeps appending, in this process or in another one.

Asset documents, per field (data key ``<stream_name>_<field>``)::

    ("stream_resource", {"uid", "data_key", "mimetype": "application/x-hdf5",
                         "uri": "file://localhost/<abs path>.h5",
                         "parameters": {"dataset": "/data/<field>", "chunk_shape": [rows],
                                        "swmr": True}})
    ("stream_datum",    {"uid": "<resource uid>/<n>", "stream_resource", "descriptor": "",
                         "indices": {"start": rows_before, "stop": rows_after},
                         "seq_nums": {"start": 0, "stop": 0}})

``descriptor`` and ``seq_nums`` are left empty on purpose: the RunEngine's ``collect`` fills
them in (it refuses stream datums that already carry them) and ``run_start`` on the resource.

A device uses it like this (see ``devices/biologic/channel.py``)::

    writer = HDF5StreamWriter(assets_dir, "potentiostat", {"Ewe": FieldSpec(units="V"), ...})
    writer.open(run_prefix)                 # stage()
    writer.describe()                       # describe_collect()
    yield from writer.append(page)          # collect_asset_docs(): page = {"Ewe": array, ...}
    writer.get_index()                      # get_index()
    writer.close()                          # unstage()
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from event_model import ComposeStreamDatum, ComposeStreamResource, StreamRange

HDF5_MIMETYPE = "application/x-hdf5"

# 16384 rows of float64 is a 128 KiB chunk: a day at 1 Hz is 6 chunks per field, so reading it
# back through tiled is a handful of requests, and each page (hundreds of rows) touches at most
# two chunks when it is appended.
DEFAULT_CHUNK_ROWS = 16384
CHUNK_CACHE_BYTES = 1 << 20  # per dataset


@dataclass(frozen=True)
class FieldSpec:
    """What one column of a stream holds.

    Parameters
    ----------
    dtype : str
        numpy dtype of one value (``"float64"``, ``"int64"``, ``"bool"``...).
    units : str
        Units, recorded in the data key.
    shape : tuple of int
        ``()`` for a scalar per row, ``(n,)`` for a fixed-length array per row.
    """

    dtype: str = "float64"
    units: str = ""
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.shape) > 1:
            raise ValueError(f"shape {self.shape}: only scalars () and 1-D arrays (n,) are supported")
        if self.shape == (1,):
            # The consolidator squeezes a (1,) datum to a scalar, which would no longer match the
            # (rows, 1) dataset in the file; say () instead.
            raise ValueError("shape (1,) is ambiguous: use shape () for one value per row")
        if np.dtype(self.dtype).kind not in "biuf":
            raise ValueError(f"dtype {self.dtype!r}: only numeric and boolean fields are supported")


def _json_dtype(spec: FieldSpec) -> str:
    """The coarse JSON type of the data key (``"number"``, ``"integer"``...)."""
    if spec.shape:
        return "array"
    kind = np.dtype(spec.dtype).kind
    return {"b": "boolean", "i": "integer", "u": "integer"}.get(kind, "number")


def _append(dataset: h5py.Dataset, start: int, values: np.ndarray) -> None:
    """Write ``values`` as rows ``start`` on of ``dataset``, growing it to end there.

    What ``dataset.resize`` and ``dataset[start:] = values`` do, through h5py's low-level calls:
    a third of their cost, which a simulated day pays 6,000 times (tests/benchmarks/bench_plating.py).
    """
    dataset.id.set_extent((start + len(values), *values.shape[1:]))
    selection = dataset.id.get_space()
    selection.select_hyperslab((start, *(0,) * (values.ndim - 1)), values.shape)
    dataset.id.write(h5py.h5s.create_simple(values.shape), selection, values)


def _file_uri(path: Path) -> str:
    """``file://localhost/<path>``: the form tiled writes and parses (``tiled.utils.ensure_uri``).

    ``Path.as_uri()`` would percent-encode spaces, which tiled's ``path_from_uri`` does not decode.
    """
    posix = path.resolve().as_posix()
    return "file://localhost" + (posix if posix.startswith("/") else "/" + posix)


class HDF5StreamWriter:
    """Append pages of rows to one HDF5 file and describe them with StreamResource/StreamDatum.

    Parameters
    ----------
    directory : Path
        Where the file goes; must be readable by the tiled server (``Storage.assets_dir``).
    stream_name : str
        Prefix of the data keys (``<stream_name>_<field>``), by convention the device name, which
        is also the usual bluesky stream name.
    fields : dict of str to FieldSpec
        The columns, in order.
    chunk_rows : int
        HDF5 chunk length along rows.
    """

    def __init__(
        self,
        directory: Path | str,
        stream_name: str,
        fields: dict[str, FieldSpec],
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        if not fields:
            raise ValueError("HDF5StreamWriter needs at least one field")
        self.directory = Path(directory)
        self.stream_name = stream_name
        self.fields = dict(fields)
        self.chunk_rows = int(chunk_rows)
        self.path: Path | None = None
        self._file: h5py.File | None = None
        self._datasets: dict[str, h5py.Dataset] = {}
        self._datum_composers: dict[str, ComposeStreamDatum] = {}
        self._resources_sent = False
        self._index = 0  # rows announced (stream datums)
        self._written = 0  # rows in the file

    # ---- names -------------------------------------------------------------------------------
    def data_key(self, field: str) -> str:
        """The bluesky data key of ``field``: ``<stream_name>_<field>``."""
        return f"{self.stream_name}_{field}"

    @staticmethod
    def dataset_path(field: str) -> str:
        """Where ``field`` lives inside the file."""
        return f"/data/{field}"

    # ---- lifecycle ---------------------------------------------------------------------------
    def open(self, run_uid_or_prefix: str) -> Path:
        """Create a new, empty file and return its path.

        A short random suffix makes the name unique even if the prefix is reused (a device name,
        a re-staged device): a file is never overwritten (mode ``w-``).
        """
        if self._file is not None:
            raise RuntimeError(f"{self.stream_name}: open() while {self.path} is still open")
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{run_uid_or_prefix}-{self.stream_name}-{uuid.uuid4().hex[:8]}.h5"
        self.path = (self.directory / name).resolve()
        # libver="latest" is required for SWMR; the datasets must exist before SWMR is switched on.
        # A page touches at most two chunks and is never read back here, so each dataset's chunk
        # cache holds a few chunks, not HDF5's default 8 MiB (which fills with written chunks:
        # +2.6 MiB per simulated day, tests/benchmarks/bench_longrun.py).
        self._file = h5py.File(self.path, "w-", libver="latest", rdcc_nbytes=CHUNK_CACHE_BYTES)
        self._datasets = {field: self._create_dataset(field, spec) for field, spec in self.fields.items()}
        self._file.swmr_mode = True
        self._datum_composers = {}
        self._resources_sent = False
        self._index = self._written = 0
        return self.path

    def _field_chunk_rows(self, spec: FieldSpec) -> int:
        """Rows per chunk, fewer for array fields so every chunk holds about as many values."""
        return max(1, self.chunk_rows // int(np.prod(spec.shape, dtype=int)))

    def _create_dataset(self, field: str, spec: FieldSpec) -> h5py.Dataset:
        return self._file.create_dataset(
            self.dataset_path(field),
            shape=(0, *spec.shape),
            maxshape=(None, *spec.shape),
            chunks=(self._field_chunk_rows(spec), *spec.shape),
            dtype=np.dtype(spec.dtype),
        )

    def close(self) -> None:
        """Close the file; the rows stay readable. Safe to call twice."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._datasets = {}

    # ---- what bluesky asks -------------------------------------------------------------------
    def describe(self) -> dict[str, dict[str, Any]]:
        """The data keys for ``describe_collect()``, one per field, all ``external: "STREAM:"``."""
        return {
            self.data_key(field): {
                "source": f"hdf5:{self.stream_name}{self.dataset_path(field)}",
                "dtype": _json_dtype(spec),
                "dtype_numpy": np.dtype(spec.dtype).str,
                "shape": list(spec.shape),
                "units": spec.units,
                "external": "STREAM:",
            }
            for field, spec in self.fields.items()
        }

    def get_index(self) -> int:
        """Number of rows announced so far (covered by stream datums)."""
        return self._index

    def append(self, page: dict[str, np.ndarray]) -> list[tuple[str, dict]]:
        """Write a page of rows, make sure it is in the file, and return its asset documents.

        :meth:`write` then :meth:`announce`.

        Parameters
        ----------
        page : dict of str to array
            One array per field (every field, nothing else), all with the same number of rows.

        Returns
        -------
        list of (name, doc)
            On the first non-empty page one ``stream_resource`` per field, then always one
            ``stream_datum`` per field covering the new rows. Empty if there are no new rows.
        """
        self.write(page)
        return self.announce()

    def write(self, page: dict[str, np.ndarray]) -> int:
        """Write rows into the file and hand them to the operating system, without announcing them.

        Rows written so survive the death of this process (not a power cut: :meth:`announce`
        fsyncs); :func:`labctl.recovery.complete_run` finds them in the file after the last
        journalled page. Returns the number of rows written.
        """
        if self._file is None:
            raise RuntimeError(f"{self.stream_name}: write() before open()")
        columns = self._checked_columns(page)
        rows = len(next(iter(columns.values())))
        if rows == 0:
            return 0
        start = self._written
        for field, values in columns.items():
            _append(self._datasets[field], start, values)
        self._file.flush()
        self._written = start + rows
        return rows

    def announce(self) -> list[tuple[str, dict]]:
        """fsync the file and return the asset documents of the rows written since the last announcement."""
        if self._file is None:
            raise RuntimeError(f"{self.stream_name}: announce() before open()")
        if self._written == self._index:
            return []
        self._sync()
        start, self._index = self._index, self._written
        docs = [] if self._resources_sent else self._stream_resources()
        self._resources_sent = True
        indices = StreamRange(start=start, stop=self._index)
        docs.extend(("stream_datum", compose(indices=indices)) for compose in self._datum_composers.values())
        return docs

    # ---- helpers -----------------------------------------------------------------------------
    def _checked_columns(self, page: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the page's columns as arrays in field order, or raise ``ValueError``."""
        missing, extra = set(self.fields) - set(page), set(page) - set(self.fields)
        if missing or extra:
            raise ValueError(f"{self.stream_name}: page fields differ: missing {sorted(missing)}, unexpected {sorted(extra)}")
        columns = {field: np.ascontiguousarray(page[field], dtype=spec.dtype) for field, spec in self.fields.items()}
        lengths = {field: len(values) for field, values in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{self.stream_name}: columns of one page must have the same length, got {lengths}")
        for field, values in columns.items():
            if values.shape[1:] != self.fields[field].shape:
                raise ValueError(f"{self.stream_name}: {field} rows have shape {values.shape[1:]}, expected {self.fields[field].shape}")
        return columns

    def _sync(self) -> None:
        """Flush HDF5's buffers and fsync, so the rows are on disk before anyone is told of them."""
        self._file.flush()
        os.fsync(self._file.id.get_vfd_handle())

    def _stream_resources(self) -> list[tuple[str, dict]]:
        """One ``stream_resource`` per field; keeps the datum composers for later pages."""
        compose_resource = ComposeStreamResource()
        docs = []
        for field, spec in self.fields.items():
            bundle = compose_resource(
                mimetype=HDF5_MIMETYPE,
                uri=_file_uri(self.path),
                data_key=self.data_key(field),
                parameters={
                    "dataset": self.dataset_path(field),
                    "chunk_shape": [self._field_chunk_rows(spec)],
                    "swmr": True,
                },
                uid=str(uuid.uuid4()),
            )
            self._datum_composers[field] = bundle.compose_stream_datum
            docs.append(("stream_resource", bundle.stream_resource_doc))
        return docs
