"""A run's time series in the Battery Data Format (``labctl export UID --format bdf``), its spectra beside it.

The Battery Data Format (BDF) of the Battery Data Alliance (a Linux Foundation Energy project) is
a table with fixed column labels and units. The labels, units and meanings used here are the
BDF's own: its README's table of required, recommended and optional quantities, and its
application ontology, version 1.3.0 (``https://w3id.org/battery-data-alliance/ontology/battery-data-format``,
read from the snapshot ``src/bdf/data/bdf-ontology-snapshot.ttl`` of
github.com/battery-data-alliance/battery-data-format at commit 1412b98, 2026-08-22).

``<uid8>-<plan>.bdf.csv`` and ``.bdf.parquet`` (the BDF's own extensions), one row per
potentiostat sample:

==============================  ==================================================================
Test Time / s                   since the run's start (its start document), on the session clock
Unix Time / s                   the sample's time, seconds since 1970-01-01 UTC, session clock
Voltage / V                     ``potentiostat_Ewe``, the cell's voltage (working minus counter)
Current / A                     ``potentiostat_I``; positive is anodic at the working electrode,
                                which is the BDF's convention (positive charges the test object)
                                with the working electrode as the positive terminal
Net Capacity / Ah               ``potentiostat_charge`` (Q - Q0, from the run's start) in Ah
Charging Capacity / Ah          the sum of the charge's rises since the run's start
Discharging Capacity / Ah       the sum of its falls, so net = charging - discharging
Cumulative Capacity / Ah        charging + discharging (the throughput)
Power / W                       voltage times current
Ambient Temperature / degC      the chamber's reading, aligned on the session clock (below)
Applied Pressure / Pa           the rig's stack pressure, aligned likewise
==============================  ==================================================================

The chamber and the rig are read far less often than the potentiostat (the plans read them at
each page of rows and around each spectrum): a row gets the linear interpolation of the two
readings around it when both are within ``ENVIRONMENT_TOLERANCE`` of it, the one reading that is
when only one is, and an empty cell when none is; nothing is extrapolated beyond that. The BDF's
cycle and step counters are left out: labctl's rows carry no cycle or step number, and the BDF
wants them as the instrument reported them, not renumbered by a converter.

Beside it, when the run took spectra (a table the BDF does not yet define; its own labels where it has them):

``<uid8>-<plan>-spectra.csv``/``.parquet``, one row per spectrum and frequency: ``Spectrum Index / 1``
(1 for the run's first), ``Test Time / s`` and ``Unix Time / s`` of the sweep's start (the same on
each row of a spectrum), ``Frequency / Hz``, ``Real Impedance / ohm`` and ``Imaginary Impedance / ohm``
(the BDF's sign: negative for capacitive behaviour, so a Nyquist plot shows its negative), and
``Voltage / V`` and ``Current / A``, the DC level the sweep was taken at.

``<uid8>-<plan>-fits.csv``/``.parquet``, one row per fitted spectrum: ``Spectrum Index / 1`` (the
spectrum it fits), its ``Test Time / s`` and ``Unix Time / s``, then every scalar the fitter stored,
headed ``name / unit`` without the ``impedance_fit_`` prefix, in name order (``r_bulk / ohm``,
``r_bulk_err / ohm``, ``asr_interface / ohm cm^2``, ``success``...; ``circuit`` is the fitted circuit's
name, as :data:`labctl.core.analysis.CIRCUITS` names it); a value the fit did not determine is empty. The DRT
(an array per spectrum) stays in the CSV and NetCDF exports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from labctl.core.errors import UsageError

# BDF labels (preferred labels of the BDF ontology 1.3.0) and their fixed units.
TEST_TIME = "Test Time / s"
UNIX_TIME = "Unix Time / s"
VOLTAGE = "Voltage / V"
CURRENT = "Current / A"
NET_CAPACITY = "Net Capacity / Ah"
CHARGING_CAPACITY = "Charging Capacity / Ah"
DISCHARGING_CAPACITY = "Discharging Capacity / Ah"
CUMULATIVE_CAPACITY = "Cumulative Capacity / Ah"
POWER = "Power / W"
AMBIENT_TEMPERATURE = "Ambient Temperature / degC"
APPLIED_PRESSURE = "Applied Pressure / Pa"
FREQUENCY = "Frequency / Hz"
REAL_IMPEDANCE = "Real Impedance / ohm"
IMAGINARY_IMPEDANCE = "Imaginary Impedance / ohm"
SPECTRUM_INDEX = "Spectrum Index / 1"  # labctl's: the BDF has no impedance table yet

BDF_COLUMNS = [TEST_TIME, UNIX_TIME, VOLTAGE, CURRENT, NET_CAPACITY, CHARGING_CAPACITY, DISCHARGING_CAPACITY,
               CUMULATIVE_CAPACITY, POWER, AMBIENT_TEMPERATURE, APPLIED_PRESSURE]
SPECTRA_COLUMNS = [SPECTRUM_INDEX, TEST_TIME, UNIX_TIME, FREQUENCY, REAL_IMPEDANCE, IMAGINARY_IMPEDANCE,
                   VOLTAGE, CURRENT]

# The plans read the chamber and rig at each page of rows (every 15 min by default) and around each
# spectrum, so 20 min reaches every row of a run at the default intervals; farther stays empty.
ENVIRONMENT_TOLERANCE = 20 * 60.0  # s

POTENTIOSTAT, ENVIRONMENT, IMPEDANCE, IMPEDANCE_FIT = "potentiostat", "environment", "impedance", "impedance_fit"
FIT_PREFIX = "impedance_fit_"


def export_bdf(run, out: Path, tolerance: float = ENVIRONMENT_TOLERANCE) -> list[Path]:
    """Write ``run`` as BDF CSV and parquet in ``out``, and its spectra and fits when it took any; return the paths.

    Raises :class:`UsageError` if the run has no potentiostat rows (the BDF needs voltage and current).
    """
    from labctl.export import stream_dataset

    names, out = set(run), Path(out)
    if POTENTIOSTAT not in names:
        raise UsageError(f"run {_uid8(run)} ({run.start.get('plan_name')}) has no potentiostat stream: the Battery "
                         f"Data Format needs voltage and current (its streams: {', '.join(sorted(names)) or 'none'})")
    environment = stream_dataset(run[ENVIRONMENT]) if ENVIRONMENT in names else None
    table = bdf_table(stream_dataset(run[POTENTIOSTAT]), environment, run.start["time"], tolerance)
    out.mkdir(parents=True, exist_ok=True)
    paths = _write(table, out / f"{_stem(run)}.bdf")
    if IMPEDANCE in names:
        spectra = stream_dataset(run[IMPEDANCE])
        paths += _write(spectra_table(spectra, run.start["time"]), out / f"{_stem(run)}-spectra")
        if IMPEDANCE_FIT in names:
            fits = fits_table(stream_dataset(run[IMPEDANCE_FIT]), spectra, run.start["time"])
            paths += _write(fits, out / f"{_stem(run)}-fits")
    return paths


def bdf_table(potentiostat, environment, t0: float, tolerance: float = ENVIRONMENT_TOLERANCE) -> pd.DataFrame:
    """The BDF table of a potentiostat stream (a Dataset with units), the environment's readings aligned on it."""
    time = potentiostat["time"].values.astype(float)
    voltage = in_unit(potentiostat, "potentiostat_Ewe", "V")
    current = in_unit(potentiostat, "potentiostat_I", "A")
    net = in_unit(potentiostat, "potentiostat_charge", "A*h")
    steps = np.diff(net, prepend=0.0)  # the charge counts from the run's start
    charging, discharging = np.cumsum(np.clip(steps, 0, None)), np.cumsum(np.clip(-steps, 0, None))
    return pd.DataFrame({
        TEST_TIME: time - t0, UNIX_TIME: time, VOLTAGE: voltage, CURRENT: current, NET_CAPACITY: net,
        CHARGING_CAPACITY: charging, DISCHARGING_CAPACITY: discharging, CUMULATIVE_CAPACITY: charging + discharging,
        POWER: voltage * current,
        AMBIENT_TEMPERATURE: _environment(environment, "chamber_temperature", "degC", time, tolerance),
        APPLIED_PRESSURE: _environment(environment, "rig_pressure", "Pa", time, tolerance),
    }, columns=BDF_COLUMNS)


def align(times, reading_times, readings, tolerance: float) -> np.ndarray:
    """Return ``readings`` (taken at ``reading_times``) at ``times``; nan where none is within ``tolerance``.

    Between two readings both within ``tolerance`` of a time: linear interpolation; one within
    reach: that reading; none: nan. Readings that are nan are not readings.
    """
    times = np.asarray(times, dtype=float)
    reading_times, readings = np.asarray(reading_times, dtype=float), np.asarray(readings, dtype=float)
    keep = np.isfinite(reading_times) & np.isfinite(readings)
    order = np.argsort(reading_times[keep], kind="stable")
    at, value = reading_times[keep][order], readings[keep][order]
    result = np.full(times.shape, np.nan)
    if at.size == 0:
        return result
    after = np.searchsorted(at, times, side="right")  # at[after - 1] <= t < at[after]
    before = after - 1
    has_before = (before >= 0) & (times - at[np.clip(before, 0, None)] <= tolerance)
    has_after = (after < at.size) & (at[np.clip(after, None, at.size - 1)] - times <= tolerance)
    b, a = np.clip(before, 0, None), np.clip(after, None, at.size - 1)
    both = has_before & has_after
    weight = np.where(both, (times - at[b]) / np.where(both, at[a] - at[b], 1.0), 0.0)
    result[both] = (value[b] + weight * (value[a] - value[b]))[both]
    result[has_before & ~has_after] = value[b][has_before & ~has_after]
    result[has_after & ~has_before] = value[a][has_after & ~has_before]
    return result


def spectra_table(spectra, t0: float) -> pd.DataFrame:
    """One row per spectrum and frequency of an ``impedance`` stream (a Dataset with units); see the module docstring."""
    frequency = in_unit(spectra, "potentiostat_eis_frequency", "Hz")
    real, imaginary = in_unit(spectra, "potentiostat_eis_z_real", "ohm"), in_unit(spectra, "potentiostat_eis_z_imag", "ohm")
    start = in_unit(spectra, "potentiostat_eis_sweep_start", "s")
    dc = {VOLTAGE: in_unit(spectra, "potentiostat_eis_ewe_dc", "V"), CURRENT: in_unit(spectra, "potentiostat_eis_i_dc", "A")}
    index = np.broadcast_to(np.arange(1, frequency.shape[0] + 1)[:, None], frequency.shape)
    per_spectrum = lambda values: np.broadcast_to(values[:, None], frequency.shape)  # noqa: E731
    measured = np.isfinite(frequency)  # spectra shorter than the longest are padded with nan
    return pd.DataFrame({
        SPECTRUM_INDEX: index[measured], TEST_TIME: per_spectrum(start - t0)[measured],
        UNIX_TIME: per_spectrum(start)[measured], FREQUENCY: frequency[measured], REAL_IMPEDANCE: real[measured],
        IMAGINARY_IMPEDANCE: imaginary[measured],
        **{label: per_spectrum(values)[measured] for label, values in dc.items()},
    }, columns=SPECTRA_COLUMNS)


def fits_table(fits, spectra, t0: float) -> pd.DataFrame:
    """One row per fit of an ``impedance_fit`` stream, matched to the spectrum it fits; see the module docstring.

    Each fit is stored when its sweep has ended, so it fits the latest spectrum started before it.
    """
    start = in_unit(spectra, "potentiostat_eis_sweep_start", "s")
    fitted = np.searchsorted(start, fits["time"].values.astype(float), side="right") - 1
    from labctl.core.analysis import CIRCUITS

    columns = {SPECTRUM_INDEX: fitted + 1, TEST_TIME: start[fitted] - t0, UNIX_TIME: start[fitted]}
    for key in sorted(fits.data_vars):
        var, name = fits[key], key.removeprefix(FIT_PREFIX)
        if name == "circuit":  # stored as an index into CIRCUITS: written as the circuit's name
            columns[name] = [CIRCUITS[int(i)].name if i == i else "" for i in var.values]
        elif var.dims == ("time",) and var.dtype.kind in "fiub":
            columns[f"{name} / {var.attrs['units']}" if var.attrs.get("units") else name] = var.values
    return pd.DataFrame(columns)


def _environment(environment, key: str, unit: str, times, tolerance: float) -> np.ndarray:
    if environment is None or key not in environment:
        return np.full(len(times), np.nan)
    return align(times, environment["time"].values, in_unit(environment, key, unit), tolerance)


def in_unit(ds, key: str, unit: str) -> np.ndarray:
    """The values of ``ds[key]`` in ``unit``, from the unit the run recorded."""
    from labctl.core.units import ureg

    recorded = ds[key].attrs.get("units")
    if not recorded:
        raise UsageError(f"{key}: the run recorded no unit for it, so it cannot be written in {unit}")
    values = ds[key].values.astype(float)
    return values if recorded == unit else ureg.Quantity(values, recorded).to(unit).magnitude


def _write(table: pd.DataFrame, stem: Path) -> list[Path]:
    """Write ``table`` as ``<stem>.csv`` (a missing value is an empty cell) and ``<stem>.parquet``."""
    csv, parquet = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".parquet")
    table.to_csv(csv, index=False)
    table.to_parquet(parquet, index=False)  # pyarrow: nan becomes null
    return [csv, parquet]


def _uid8(run) -> str:
    return run.start["uid"][:8]


def _stem(run) -> str:
    return f"{_uid8(run)}-{run.start.get('plan_name')}"
