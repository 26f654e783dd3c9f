"""Read BioLogic EC-Lab ``.mpr`` files into labctl's stream layout, so old data meets the same analysis.

:func:`read_mpr` parses the file with galvani (PyPI ``galvani``, GPLv3+, an optional dependency
imported only here) and :func:`from_eclab` maps EC-Lab's columns onto the streams a labctl run
stores: ``potentiostat`` (time s, Ewe V, I A, charge C) and, for files with impedance data,
``impedance`` (one row per spectrum, arrays over frequency, Z' and Z'' in ohm with Z'' negative for
a capacitive arc, as labctl stores them). Times are seconds from the file's start.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from labctl.core.errors import LabctlError

COULOMB_PER_MAH = 3.6
# EC-Lab writes a quantity under either name depending on the technique (averaged or sampled).
CURRENT_MA = ("I/mA", "<I>/mA")
VOLTAGE = ("Ewe/V", "<Ewe>/V")


def read_mpr(path: Path) -> dict[str, xr.Dataset]:
    """Return the streams of an EC-Lab ``.mpr`` file (see :func:`from_eclab`)."""
    try:
        from galvani.BioLogic import MPRfile
    except ImportError as err:
        raise LabctlError("reading .mpr files needs galvani: pip install 'galvani>=0.5,<0.6'") from err
    with open(path, "rb") as f:
        return from_eclab(MPRfile(f).data)


def from_eclab(records) -> dict[str, xr.Dataset]:
    """Map EC-Lab columns (a numpy record array, or a dict of arrays, by EC-Lab's column names) to streams.

    Rows with a frequency (``freq/Hz`` > 0) are impedance points; a new spectrum starts wherever the
    frequency rises again (EC-Lab sweeps from high to low). The other rows are the potentiostat's.
    """
    names = records.dtype.names if hasattr(records, "dtype") else tuple(records)
    column = lambda name: np.asarray(records[name], dtype=float)  # noqa: E731
    n = len(column("time/s"))
    frequency = column("freq/Hz") if "freq/Hz" in names else np.zeros(n)
    eis = frequency > 0
    streams = {}
    if np.any(~eis):
        streams["potentiostat"] = _potentiostat(names, column, ~eis)
    if np.any(eis):
        streams["impedance"] = _impedance(names, column, eis)
    return streams


def _first(names, options: tuple[str, ...]) -> str | None:
    return next((name for name in options if name in names), None)


def _potentiostat(names, column, rows) -> xr.Dataset:
    time = column("time/s")[rows]
    voltage = _first(names, VOLTAGE)
    current = _first(names, CURRENT_MA)
    data = {"potentiostat_time": time,
            "potentiostat_Ewe": column(voltage)[rows] if voltage else np.full(time.size, np.nan),
            "potentiostat_I": column(current)[rows] * 1e-3 if current else np.full(time.size, np.nan)}
    if "(Q-Qo)/C" in names:
        data["potentiostat_charge"] = column("(Q-Qo)/C")[rows]
    elif "(Q-Qo)/mA.h" in names:
        data["potentiostat_charge"] = column("(Q-Qo)/mA.h")[rows] * COULOMB_PER_MAH
    return xr.Dataset({key: ("time", value) for key, value in data.items()})


def _impedance(names, column, rows) -> xr.Dataset:
    frequency = column("freq/Hz")[rows]
    starts = np.flatnonzero(np.r_[True, np.diff(frequency) > 0])
    pieces = lambda values: np.split(values, starts[1:])  # noqa: E731
    width = max(len(p) for p in pieces(frequency))
    padded = lambda values: np.array([np.pad(p, (0, width - len(p)), constant_values=np.nan)  # noqa: E731
                                      for p in pieces(values)])
    time = pieces(column("time/s")[rows])
    data = {
        "potentiostat_eis_frequency": padded(frequency),
        "potentiostat_eis_z_real": padded(column("Re(Z)/Ohm")[rows]),
        "potentiostat_eis_z_imag": padded(-column("-Im(Z)/Ohm")[rows]),
    }
    scalars = {"potentiostat_eis_sweep_start": np.array([t[0] for t in time])}
    voltage, current = _first(names, ("<Ewe>/V", "Ewe/V")), _first(names, ("<I>/mA", "I/mA"))
    if voltage:
        scalars["potentiostat_eis_ewe_dc"] = np.array([p.mean() for p in pieces(column(voltage)[rows])])
    if current:
        scalars["potentiostat_eis_i_dc"] = np.array([p.mean() for p in pieces(column(current)[rows])]) * 1e-3
    return xr.Dataset({**{k: (("time", "dim_int_1"), v) for k, v in data.items()},
                       **{k: ("time", v) for k, v in scalars.items()}})
