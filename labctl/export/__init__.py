"""Export a stored run's streams (``labctl export``) and read EC-Lab ``.mpr`` files into the same shape.

Formats (:func:`export`): ``csv`` and ``netcdf`` here, every stream as labctl stores it;
``bdf``, the Battery Data Format with the spectra beside it (:mod:`labctl.export.bdf`);
``battinfo``, the cell as BattINFO JSON-LD (:mod:`labctl.export.battinfo`); ``rocrate``, the
run's whole sequence bundled as an RO-Crate (:mod:`labctl.export.crate`).

Units come from the run's descriptors (each field's ``units``); every stream's ``time`` is seconds
since the epoch on the session clock. The ``potentiostat`` stream's rows arrive as pages, which
tiled indexes by row number; the exports give ``time`` as each row's measured time instead.

CSV: one file per stream, ``<uid8>-<plan>-<stream>.csv``, each column headed ``name / unit``
(``potentiostat_Ewe / V``; unitless values just ``name``), as EC-Lab heads its own (``Ewe/V``).
Streams of arrays (the impedance spectra, one event per spectrum, arrays over frequency) are
written long, one row per (event, point), with the event's scalars repeated on each of its rows,
which any spreadsheet or ``pandas.read_csv`` reads; :func:`read_csv` gives back the Dataset with
its units.

NetCDF: one file per run, one group per stream (netCDF4 groups through h5netcdf), each variable
with its ``units`` attribute, and the run's start and stop documents as JSON in the file's
attributes (with ``streams``, the group names), so the file stands alone. Open one stream with
``xarray.open_dataset(path, group="potentiostat")``, all of them with ``xarray.open_datatree(path)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

NETCDF_ENGINE = "h5netcdf"  # groups need netCDF4; h5netcdf writes it with the h5py we already have


TIME_UNITS = "s"  # seconds since the epoch (1970-01-01 UTC) on the session clock
TIME_MEANING = "seconds since 1970-01-01 UTC, session clock"
UNIT_SEPARATOR = " / "


FORMATS = ("csv", "netcdf", "bdf", "battinfo", "rocrate")


def export(run, format: str, out: Path) -> list[Path]:
    """Write ``run`` in ``format`` (one of :data:`FORMATS`) into the folder ``out``; return the paths written."""
    if format == "csv":
        return export_csv(run, out)
    if format == "netcdf":
        return [export_netcdf(run, out)]
    if format == "bdf":
        from labctl.export.bdf import export_bdf

        return export_bdf(run, out)
    if format == "battinfo":
        from labctl.export.battinfo import export_battinfo

        return [export_battinfo(run, out)]
    if format == "rocrate":
        from labctl.export.crate import export_sequence_crate

        return [export_sequence_crate(run, out)]
    raise ValueError(f"format {format!r}: one of {', '.join(FORMATS)}")


def run_datasets(run) -> dict[str, xr.Dataset]:
    """Return every stream of a run as an xarray Dataset, by stream name, each variable with its ``units``."""
    return {name: stream_dataset(run[name]) for name in run}


def stream_dataset(stream) -> xr.Dataset:
    """One stream read as a Dataset with units, ``time`` the measured time (see the module docstring)."""
    ds = _plain(stream.read())
    data_keys = (getattr(stream, "metadata", None) or {}).get("data_keys", {})
    for key, var in ds.data_vars.items():
        if data_keys.get(key, {}).get("units"):
            var.attrs["units"] = data_keys[key]["units"]
    row_times = [key for key in ds.data_vars if key.endswith("_time") and ds[key].dims == ("time",)]
    indexed = "time" not in ds.coords or ds["time"].dtype.kind in "iu"
    if "time" in ds.dims and indexed and row_times:  # pages, indexed by row number
        ds = ds.assign_coords(time=ds[row_times[0]].values)
    if "time" in ds.coords:
        ds["time"].attrs.update(units=TIME_UNITS, long_name=TIME_MEANING)
    return ds


def export_csv(run, out: Path) -> list[Path]:
    """Write each stream of ``run`` to a CSV file in ``out``, columns headed ``name / unit``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ds in run_datasets(run).items():
        path = out / f"{_stem(run)}-{name}.csv"
        table = ds.to_dataframe()
        table.columns = [_header(key, ds[key].attrs) for key in table.columns]
        table.index.names = [_header(dim, ds[dim].attrs if dim in ds.coords else {}) for dim in table.index.names]
        table.to_csv(path)
        paths.append(path)
    return paths


def read_csv(path: Path) -> xr.Dataset:
    """Read a CSV file :func:`export_csv` wrote back into a Dataset, units as ``units`` attributes."""
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns
    table = pd.read_csv(path)
    named = {column: column.split(UNIT_SEPARATOR)[0] for column in header}
    units = {named[c]: c.split(UNIT_SEPARATOR, 1)[1] for c in header if UNIT_SEPARATOR in c}
    dims = [named[c] for c in header if named[c] == "time" or named[c].startswith("dim_")]
    ds = xr.Dataset.from_dataframe(table.rename(columns=named).set_index(dims))
    for key, unit in units.items():
        ds[key].attrs["units"] = unit
    return ds


def _header(key: str, attrs: dict) -> str:
    return f"{key}{UNIT_SEPARATOR}{attrs['units']}" if attrs.get("units") else str(key)


def export_netcdf(run, out: Path) -> Path:
    """Write every stream of ``run`` into one NetCDF4 file in ``out``, a group per stream."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_stem(run)}.nc"
    streams = run_datasets(run)
    root = xr.Dataset(attrs={"start": json.dumps(dict(run.start), default=str),
                             "stop": json.dumps(dict(run.stop or {}), default=str),
                             "streams": " ".join(streams)})
    root.to_netcdf(path, mode="w", engine=NETCDF_ENGINE)
    for name, ds in streams.items():
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
