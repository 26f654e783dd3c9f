"""Export a stored run's streams (``labctl export``) and read EC-Lab ``.mpr`` files into the same shape.

CSV: one file per stream, ``<uid8>-<plan>-<stream>.csv``. Streams of arrays (the impedance spectra,
one event per spectrum, arrays over frequency) are written long, one row per (event, point), with
the event's scalars repeated on each of its rows, which any spreadsheet or ``pandas.read_csv`` reads.

NetCDF: one file per run, one group per stream (netCDF4 groups through h5netcdf), and the run's
start and stop documents as JSON in the file's attributes, so the file stands alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

NETCDF_ENGINE = "h5netcdf"  # groups need netCDF4; h5netcdf writes it with the h5py we already have


def run_datasets(run) -> dict[str, xr.Dataset]:
    """Return every stream of a run as an xarray Dataset, by stream name."""
    return {name: _plain(run[name].read()) for name in run}


def export_csv(run, out: Path) -> list[Path]:
    """Write each stream of ``run`` to a CSV file in ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ds in run_datasets(run).items():
        path = out / f"{_stem(run)}-{name}.csv"
        ds.to_dataframe().to_csv(path)
        paths.append(path)
    return paths


def export_netcdf(run, out: Path) -> Path:
    """Write every stream of ``run`` into one NetCDF4 file in ``out``, a group per stream."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_stem(run)}.nc"
    root = xr.Dataset(attrs={"start": json.dumps(dict(run.start), default=str),
                             "stop": json.dumps(dict(run.stop or {}), default=str)})
    root.to_netcdf(path, mode="w", engine=NETCDF_ENGINE)
    for name, ds in run_datasets(run).items():
        ds.to_netcdf(path, mode="a", group=name, engine=NETCDF_ENGINE)
    return path


def read_netcdf(path: Path) -> tuple[dict, dict, dict[str, xr.Dataset]]:
    """Return (start, stop, streams by name) from a file :func:`export_netcdf` wrote."""
    with xr.open_datatree(path, engine=NETCDF_ENGINE) as tree:
        streams = {name: node.to_dataset().load() for name, node in tree.children.items()}
        start, stop = json.loads(tree.attrs["start"]), json.loads(tree.attrs["stop"])
    return start, stop, streams


def _plain(ds: xr.Dataset) -> xr.Dataset:
    """Return ``ds`` with attributes a NetCDF file can hold (tiled attaches nested dicts)."""
    ds = ds.copy()
    ds.attrs = {}
    for var in ds.variables.values():
        var.attrs = {k: v for k, v in var.attrs.items() if isinstance(v, (str, int, float, np.number))}
    return ds


def _stem(run) -> str:
    return f"{run.start['uid'][:8]}-{run.start.get('plan_name')}"
